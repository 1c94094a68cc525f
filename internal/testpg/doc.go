// Package testpg gives tests real, throwaway PostgreSQL servers (via
// internal/pgserver): hermetic (own directory, a random free port on
// 127.0.0.1), fast (fsync off), and cleaned up afterwards.
//
// New starts one server per test. Shared starts one server per test binary,
// for packages whose tests can share it (use distinct database names); such
// a package must stop it from TestMain:
//
//	func TestMain(m *testing.M) { testpg.Main(m) }
//
// A shared server left running by a crashed test binary still shuts itself
// down, as pgserver ties the postmaster's life to its parent's.
package testpg
