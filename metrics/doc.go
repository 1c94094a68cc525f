// Package metrics holds a node's Prometheus collectors on a registry of its
// own (several nodes may share a process in tests), served at /metrics on the
// node's HTTP address. Every method is safe on a nil *Metrics, so components
// built without metrics (unit tests) need no stubs.
package metrics
