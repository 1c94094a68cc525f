// Command idleconns measures what idle client connections cost a server
// process: it opens N connections (each runs SELECT 1, then waits), and
// prints the process's resident memory and, when a Prometheus endpoint is
// given, its Go heap and stack in use, before and after, per connection.
//
//	go run ./bench/idleconns -url 'postgresql://...?sslmode=require' -pid PID -n 500 [-metrics http://HOST/metrics]
//
// Output is one tab-separated line: n, rss_kib_per_conn, heap_kib_per_conn,
// stack_kib_per_conn (the last two are "-" without -metrics).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	url := flag.String("url", "", "connection string (sslmode=require for TLS)")
	pid := flag.Int("pid", 0, "pid of the server process to measure")
	n := flag.Int("n", 500, "connections to open")
	metricsURL := flag.String("metrics", "", "the server's Prometheus /metrics URL (Go heap and stack)")
	settle := flag.Duration("settle", 3*time.Second, "wait before measuring, once the connections are open")
	flag.Parse()
	if *url == "" || *pid == 0 {
		log.Fatal("idleconns: -url and -pid are required")
	}
	ctx := context.Background()
	time.Sleep(*settle)
	rss0, heap0, stack0 := measure(*pid, *metricsURL)

	conns := make([]*pgx.Conn, *n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 16)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c, err := pgx.Connect(cctx, *url)
			if err == nil {
				_, err = c.Exec(cctx, "SELECT 1")
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	if firstErr != nil {
		log.Fatalf("idleconns: open connections: %v", firstErr)
	}
	time.Sleep(*settle)
	rss1, heap1, stack1 := measure(*pid, *metricsURL)
	per := func(a, b float64) string {
		if a < 0 || b < 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", (b-a)/1024/float64(*n))
	}
	fmt.Printf("%d\t%s\t%s\t%s\n", *n, per(rss0, rss1), per(heap0, heap1), per(stack0, stack1))
	for _, c := range conns {
		_ = c.Close(ctx)
	}
}

// measure returns the process's RSS and, from metrics, Go heap and stack in
// use, in bytes (-1 when unknown).
func measure(pid int, metricsURL string) (rss, heap, stack float64) {
	rss, heap, stack = -1, -1, -1
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kib, _ := strconv.ParseFloat(f[1], 64)
				rss = kib * 1024
			}
		}
	}
	if metricsURL == "" {
		return rss, heap, stack
	}
	resp, err := http.Get(metricsURL)
	if err != nil {
		log.Printf("idleconns: %v", err)
		return rss, heap, stack
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "go_memstats_heap_inuse_bytes":
			heap = v
		case "go_memstats_stack_inuse_bytes":
			stack = v
		}
	}
	return rss, heap, stack
}
