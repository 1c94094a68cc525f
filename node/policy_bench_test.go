package node_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"tdb/internal/testnode"
)

func connectB(b *testing.B, connString string) *pgx.Conn {
	b.Helper()
	c, err := pgx.Connect(context.Background(), connString)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// BenchmarkRelayRows streams a result of 1M rows through the proxy, with the
// row limit off and with it on (counting every DataRow), to show the cost of
// enforcement on the relay. Compare ns/op and the rows/s metric.
func BenchmarkRelayRows(b *testing.B) {
	e := testnode.Start(b)
	ctx := context.Background()
	for _, bc := range []struct {
		name    string
		maxRows int64
	}{{"limit_off", 0}, {"limit_on", 10_000_000}} {
		b.Run(bc.name, func(b *testing.B) {
			e.MustDo(b, "PATCH", "/v1/workspaces/controlplane/settings", e.ProxyPassword, "", map[string]int64{"max_rows_per_query": bc.maxRows}, nil)
			c := connectB(b, e.ConnString(e.ProxyPassword, "controlplane_workspace", "disable"))
			const n = 1_000_000
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rows, err := c.Query(ctx, "SELECT generate_series(1, 1000000)")
				if err != nil {
					b.Fatal(err)
				}
				got := 0
				for rows.Next() {
					got++
				}
				if rows.Err() != nil || got != n {
					b.Fatalf("%d rows, %v", got, rows.Err())
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
