// Package actors holds tdb's long-lived goroutines. Each owns its state, takes
// work through a typed inbox or by watching the replicated state, and stops on
// its context. The logic sits in synchronous cores that tests step directly;
// the goroutines are thin loops around them.
//
//   - Reconciler (leader only): makes backend servers match the physical
//     databases recorded in the FSM: provisions, brings new tenants to the
//     latest blueprint version, drops deleted ones.
//   - Proxy connections, session pools, the ban tracker: see their files.
package actors
