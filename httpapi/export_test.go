package httpapi

import (
	"net/http"
	"time"
)

// NewWithProvisionTimeout is New with a shorter wait for tenant provisioning.
func NewWithProvisionTimeout(c Cluster, d time.Duration) http.Handler {
	s := newServer(c, nil)
	s.provisionTimeout = d
	return s.routes()
}
