package httpapi

import (
	"context"
	"net/http"

	"tdb/fsm"
)

// clusterStatus: GET /v1/cluster/status, any valid key.
func (s *server) clusterStatus(w http.ResponseWriter, r *http.Request, _ *caller) error {
	st, err := s.c.Status(r.Context())
	if err != nil {
		return errf(http.StatusServiceUnavailable, codeUnavailable, "cluster status: %v", err)
	}
	if st.Nodes == nil {
		st.Nodes = []NodeStatus{}
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// ClusterSettings is the body of GET and PATCH /v1/cluster/settings.
type ClusterSettings struct {
	fsm.ClusterSettings
	RaftIndex uint64 `json:"raft_index,omitempty"`
}

// getClusterSettings: GET /v1/cluster/settings, any valid key.
func (s *server) getClusterSettings(w http.ResponseWriter, _ *http.Request, _ *caller) error {
	var out ClusterSettings
	s.view(func(st *fsm.State) { out.ClusterSettings = st.Settings })
	writeJSON(w, http.StatusOK, out)
	return nil
}

// updateClusterSettings: PATCH /v1/cluster/settings, operator only; absent
// fields stay unchanged. A body that sets no field changes nothing and
// commits nothing: it answers the settings as they are, as GET does.
func (s *server) updateClusterSettings(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireOperator("change cluster settings"); err != nil {
		return err
	}
	var req fsm.SetClusterSettings
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req == (fsm.SetClusterSettings{}) {
		return s.getClusterSettings(w, r, c)
	}
	var err error
	s.view(func(st *fsm.State) { err = fsm.CheckClusterSettings(st.Settings, &req) })
	if err != nil {
		return err
	}
	index, err := s.apply(r.Context(), fsm.CmdSetClusterSettings, req)
	if err != nil {
		return err
	}
	out := ClusterSettings{RaftIndex: index}
	s.view(func(st *fsm.State) { out.ClusterSettings = st.Settings })
	writeJSON(w, http.StatusOK, out)
	return nil
}

// getClusterBackup: GET /v1/cluster/backup, operator only. The metadata
// backup (fsm.Backup) of a state that holds every write acknowledged
// before the request: the node first catches up with the leader (Syncer),
// and answers 503 when it cannot. It holds every secret of the cluster.
func (s *server) getClusterBackup(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := c.requireOperator("back up the cluster's metadata"); err != nil {
		return err
	}
	if sy, ok := s.c.(Syncer); ok {
		ctx, cancel := context.WithTimeout(r.Context(), s.applyTimeout)
		err := sy.Sync(ctx)
		cancel()
		if err != nil {
			s.logf("httpapi: backup: %v", err)
			return errf(http.StatusServiceUnavailable, codeUnavailable,
				"this node could not catch up with the cluster leader for a consistent backup: %v; retry", err)
		}
	}
	b, err := s.c.FSM().Backup(s.now())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, b)
	return nil
}
