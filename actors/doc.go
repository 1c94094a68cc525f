// Package actors holds tdb's long-lived goroutines. Each owns its state, takes
// work through a typed inbox or by watching the replicated state, and stops on
// its context. The logic sits in synchronous cores that tests step directly;
// the goroutines are thin loops around them.
//
//   - Proxy (proxy.go) accepts wire clients; each gets a connection actor
//     (conn.go: admission, startup, SCRAM, scope) and then a session
//     (session.go) that relays frames both ways. The tracker (tracker.go)
//     follows statements to their results for DDL capture (capture.go); the
//     governor (enforce.go, limits.go) applies workspace limits and feeds the
//     query log; guard.go refuses statements that would subvert the role model.
//   - Pool (pool.go) keeps reset backend sessions between clients.
//   - The ban tracker (bans.go) batches failed logins into raft commands.
//   - Leader-only actors watch the FSM: the Reconciler provisions and drops
//     physical databases and brings new tenants to the latest blueprint
//     version; the Deployer and the Importer carry out deployments and
//     import-full jobs, tenant by tenant (tenantjobs.go, deploy_apply.go).
package actors
