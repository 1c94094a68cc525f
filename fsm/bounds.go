package fsm

// Bounds of settings, checked in one place for the HTTP API (before it
// proposes) and the FSM's appliers: the lower ones always, the upper ones
// by the FSM from log version 2 on. Past an upper bound a value would
// overflow where the proxy turns it into a duration (a huge
// query_timeout_ms became a timeout that fired at once, a huge ban none at
// all), and no real setting needs more.
const (
	MaxQueryTimeoutMs  = 2147483647 // PostgreSQL's own statement_timeout maximum (about 24.8 days)
	MaxRowsPerQuery    = 1_000_000_000_000
	MaxConnectionCount = 1_000_000   // max_connections, max_conns_per_ip
	MaxAuthFailCount   = 1_000_000   // auth_fail_threshold
	MaxSettingSeconds  = 366 * 86400 // auth_fail_window_sec, ban_sec, max_ban_sec
)

// CheckWorkspaceSettings checks the values a settings change gives.
func CheckWorkspaceSettings(c *UpdateWorkspaceSettings) error { return checkWorkspaceSettings(c, true) }

// checkWorkspaceSettings checks the lower bounds, and the upper ones when
// upper is set (from log version 2 on, in the FSM).
func checkWorkspaceSettings(c *UpdateWorkspaceSettings, upper bool) error {
	return checkBounds([]bound{
		{"max_rows_per_query", c.MaxRowsPerQuery, 0, MaxRowsPerQuery, true},
		{"query_timeout_ms", c.QueryTimeoutMs, 0, MaxQueryTimeoutMs, true},
		{"max_connections", c.MaxConnections, 0, MaxConnectionCount, true},
	}, upper)
}

// CheckClusterSettings checks the values a cluster settings change gives,
// and that the longest ban is not shorter than the first one, once the
// change is made to cur.
func CheckClusterSettings(cur ClusterSettings, c *SetClusterSettings) error {
	return checkClusterSettings(cur, c, true)
}

// checkClusterSettings checks the lower bounds, and with upper the upper
// ones and the two bans' order.
func checkClusterSettings(cur ClusterSettings, c *SetClusterSettings, upper bool) error {
	if err := checkBounds([]bound{
		{"max_conns_per_ip", c.MaxConnsPerIP, 0, MaxConnectionCount, false},
		{"auth_fail_threshold", c.AuthFailThreshold, 0, MaxAuthFailCount, false},
		{"auth_fail_window_sec", c.AuthFailWindowSec, 1, MaxSettingSeconds, false},
		{"ban_sec", c.BanSec, 1, MaxSettingSeconds, false},
		{"max_ban_sec", c.MaxBanSec, 1, MaxSettingSeconds, false},
	}, upper); err != nil {
		return err
	}
	if !upper || (c.BanSec == nil && c.MaxBanSec == nil) {
		return nil // a change of other settings is not held up by stored bans
	}
	ban, maxBan := cur.BanSec, cur.MaxBanSec
	if c.BanSec != nil {
		ban = *c.BanSec
	}
	if c.MaxBanSec != nil {
		maxBan = *c.MaxBanSec
	}
	if maxBan < ban {
		return errorf(CodeBadRequest, "max_ban_sec (%d) must not be less than ban_sec (%d)", maxBan, ban)
	}
	return nil
}

type bound struct {
	name     string
	v        *int64
	min, max int64
	zeroOff  bool // 0 turns the setting off (the workspace limits)
}

func checkBounds(bs []bound, upper bool) error {
	for _, b := range bs {
		switch {
		case b.v == nil:
		case *b.v < b.min && b.zeroOff:
			return errorf(CodeBadRequest, "%s must be 0 (off) or positive", b.name)
		case *b.v < b.min:
			return errorf(CodeBadRequest, "%s must be at least %d", b.name, b.min)
		case upper && *b.v > b.max:
			return errorf(CodeBadRequest, "%s must be at most %d", b.name, b.max)
		}
	}
	return nil
}
