package httpapi

import (
	"net/http"

	"tdb/fsm"
)

// placeDatabase describes a new physical database: on the registered backend
// holding the fewest databases (ties by name), with a fresh random name and
// fresh role passwords.
func placeDatabase(st *fsm.State) (fsm.NewDatabase, error) {
	best, bestN := "", 0
	for _, b := range st.SortedBackends() {
		if n := st.DatabasesOn(b.Name); best == "" || n < bestN {
			best, bestN = b.Name, n
		}
	}
	if best == "" {
		return fsm.NewDatabase{}, errf(http.StatusServiceUnavailable, codeUnavailable,
			"no backend registered: the operator must add one with `tdb backends add`")
	}
	return fsm.NewDatabase{
		Name:      newPhysicalDatabase(),
		Backend:   best,
		Passwords: newRolePasswords(),
	}, nil
}
