// Command idleconns measures what idle client connections cost a server
// process: it opens N connections (each runs SELECT 1, then waits), and
// prints the process's resident memory and, when a Prometheus endpoint is
// given, its live Go heap and stack in use, before and after, per connection.
//
//	go run ./bench/idleconns -url 'postgresql://...?sslmode=require' -pid PID -n 500 [-metrics http://HOST/metrics]
//
// With -connect-only the connections only log in (no statement), and with
// -ips K they come from K loopback addresses (127.0.0.1 … 127.0.0.K), so
// more than one address's worth of ephemeral ports can be opened. With
// -gc-url the server collects garbage before each measurement.
//
// Output is one tab-separated line: n, rss_kib_per_conn, heap_kib_per_conn,
// stack_kib_per_conn (these two are "-" without -metrics), and
// rss_kib_per_conn_second_half: the RSS growth while the second half of the
// connections opened, per connection of that half.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	url := flag.String("url", "", "connection string (sslmode=require for TLS)")
	pid := flag.Int("pid", 0, "pid of the server process to measure")
	n := flag.Int("n", 500, "connections to open")
	metricsURL := flag.String("metrics", "", "the server's Prometheus /metrics URL (Go heap and stack)")
	settle := flag.Duration("settle", 3*time.Second, "wait before measuring, once the connections are open")
	connectOnly := flag.Bool("connect-only", false, "log in only: no statement")
	ips := flag.Int("ips", 1, "loopback source addresses to spread the connections over (127.0.0.1 …)")
	parallel := flag.Int("parallel", 16, "connections opened at once")
	gcURL := flag.String("gc-url", "", "a URL that makes the server collect garbage before each measurement (tdb: /debug/pprof/heap?gc=1)")
	gcKey := flag.String("gc-key", "", "bearer key for -gc-url (tdb: the admin key)")
	flag.Parse()
	raiseFileLimit(*n + 1000)
	if *url == "" || *pid == 0 {
		log.Fatal("idleconns: -url and -pid are required")
	}
	ctx := context.Background()
	time.Sleep(*settle)
	collect(*gcURL, *gcKey)
	rss0, heap0, stack0 := measure(*pid, *metricsURL)

	conns := make([]*pgx.Conn, *n)
	// open opens conns[lo:hi], at most -parallel at once.
	open := func(lo, hi int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		sem := make(chan struct{}, *parallel)
		for i := lo; i < hi; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				cfg, err := pgx.ParseConfig(*url)
				if err != nil {
					log.Fatalf("idleconns: %v", err)
				}
				src := net.IPv4(127, 0, 0, byte(1+i%max(1, min(*ips, 250))))
				cfg.DialFunc = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}).DialContext
				c, err := pgx.ConnectConfig(cctx, cfg)
				if err == nil && !*connectOnly {
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
	}
	// Measured after each half: the second half's growth is what one more
	// connection costs once the process holds many (the first half's also
	// carries the process's own growth: its collector's headroom over a
	// larger heap, pages the runtime or allocator takes in bulk).
	half := *n / 2
	open(0, half)
	time.Sleep(*settle)
	collect(*gcURL, *gcKey)
	rssHalf, _, _ := measure(*pid, *metricsURL)
	open(half, *n)
	time.Sleep(*settle)
	collect(*gcURL, *gcKey)
	rss1, heap1, stack1 := measure(*pid, *metricsURL)
	per := func(a, b float64, n int) string {
		if a < 0 || b < 0 || n <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", (b-a)/1024/float64(n))
	}
	fmt.Printf("%d\t%s\t%s\t%s\t%s\n", *n, per(rss0, rss1, *n), per(heap0, heap1, *n), per(stack0, stack1, *n),
		per(rssHalf, rss1, *n-half))
	for _, c := range conns {
		_ = c.Close(ctx)
	}
}

// collect asks the server to collect garbage, so the heap measured is what
// the connections keep, not what their logins left behind.
func collect(url, key string) {
	if url == "" {
		return
	}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		log.Fatalf("idleconns: %v", err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatalf("idleconns: %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		log.Fatalf("idleconns: %s: %s", url, resp.Status)
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
		case "go_memstats_heap_alloc_bytes":
			// Live bytes after the collection: what the connections keep.
			// The heap's spans in use would also count free slots in them,
			// which depend on what ran before (a warm process fills holes).
			heap = v
		case "go_memstats_stack_inuse_bytes":
			stack = v
		}
	}
	return rss, heap, stack
}

// raiseFileLimit lifts the open-file limit to at least n where allowed.
func raiseFileLimit(n int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= uint64(n) {
		return
	}
	lim.Cur = uint64(n)
	if lim.Max < lim.Cur {
		lim.Max = lim.Cur // needs privilege; without it the open fails later with a clear error
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Printf("idleconns: raise the open-file limit to %d: %v", n, err)
	}
}
