// Package querylog holds the proxy's query log: one Entry per statement the
// wire proxy relayed, kept in a bounded in-memory ring per node (served by
// GET /v1/logs) and written as JSON lines to the node's log output.
package querylog
