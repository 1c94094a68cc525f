package fsm

import (
	"container/list"
	"encoding/json"
	"sort"
	"time"
)

// MaxAuthRecords caps the IPs the auth-ban table remembers. Past it, the IP
// whose last failure is oldest is forgotten first, preferring IPs not banned,
// so a flood of distinct addresses costs bounded memory and does not lift the
// bans of real offenders.
const MaxAuthRecords = 50_000

// AuthRecord is what the cluster remembers of one client IP's failed
// authentications.
type AuthRecord struct {
	IP          string    `json:"ip"`
	Failures    int64     `json:"failures"`     // failures in the current window
	WindowStart time.Time `json:"window_start"` // start of the current window
	Offenses    int64     `json:"offenses"`     // bans so far; each doubles the next
	BannedUntil time.Time `json:"banned_until"` // zero, or the end of the latest ban
	LastFailure time.Time `json:"last_failure"`
}

// Banned reports whether the record's IP is banned at now.
func (r *AuthRecord) Banned(now time.Time) bool { return now.Before(r.BannedUntil) }

// BanTable holds the auth-failure counters and bans of client IPs. It is
// bounded: records are forgotten AuthFailWindowSec+MaxBanSec after their last
// failure (a repeat offender within that time gets a doubled ban), and at most
// MaxAuthRecords are kept. Records are ordered by last failure (least recent
// first), which makes expiry and eviction deterministic and cheap.
type BanTable struct {
	byIP  map[string]*list.Element // of *AuthRecord
	order *list.List               // least recently failed first
	clock time.Time                // latest command time seen: time never runs backwards here
	// batches are the last recentBatches batch IDs each node's tracker
	// committed, oldest first: a batch proposed again (its first commit's
	// outcome was unknown to it) counts once.
	batches map[string][]string
	// batchAt is when each node's last batch was recorded (from log
	// version 7): CompactState forgets the batch IDs of a node gone from
	// the cluster once its last batch is old enough.
	batchAt map[string]time.Time
}

// recentBatches is how many batch IDs per node the table remembers: a
// tracker proposes a batch again before any new one, so one would do.
const recentBatches = 8

// seenBatch reports whether node's batch id was recorded, and remembers it.
func (t *BanTable) seenBatch(node, id string) bool {
	for _, b := range t.batches[node] {
		if b == id {
			return true
		}
	}
	if t.batches == nil {
		t.batches = map[string][]string{}
	}
	ids := append(t.batches[node], id)
	if len(ids) > recentBatches {
		ids = append([]string(nil), ids[len(ids)-recentBatches:]...)
	}
	t.batches[node] = ids
	return false
}

// noteBatch records that node's latest batch was recorded at at (or at
// the table's clock, if later).
func (t *BanTable) noteBatch(node string, at time.Time) {
	if at.Before(t.clock) {
		at = t.clock
	}
	if t.batchAt == nil {
		t.batchAt = map[string]time.Time{}
	}
	t.batchAt[node] = at
}

// forgetBatches forgets node's batch IDs if its last batch was recorded
// before before, and reports whether it did. A node with batch IDs and no
// time (recorded before log version 7) gets now as its time instead.
func (t *BanTable) forgetBatches(node string, before, now time.Time) bool {
	if _, ok := t.batches[node]; !ok {
		return false
	}
	at, ok := t.batchAt[node]
	if !ok {
		t.noteBatch(node, now)
		return false
	}
	if !at.Before(before) {
		return false
	}
	delete(t.batches, node)
	delete(t.batchAt, node)
	return true
}

// BatchNodes returns the nodes whose batch IDs the table remembers, with
// when their last batch was recorded (zero: before log version 7), ordered
// by node.
func (t *BanTable) BatchNodes() []BatchNode {
	out := make([]BatchNode, 0, len(t.batches))
	for node := range t.batches {
		out = append(out, BatchNode{Node: node, Last: t.batchAt[node]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// BatchNode is a node whose batch IDs the ban table remembers.
type BatchNode struct {
	Node string
	Last time.Time // zero: recorded before log version 7
}

// AuthFailure counts the failed authentications of one IP in a batch.
type AuthFailure struct {
	IP    string `json:"ip"`
	Count int64  `json:"count"`
}

// Ban is a ban decided by a RecordAuthFailures command.
type Ban struct {
	IP       string    `json:"ip"`
	Until    time.Time `json:"until"`
	Offenses int64     `json:"offenses"`
}

func (t *BanTable) init() {
	if t.byIP == nil {
		t.byIP = map[string]*list.Element{}
		t.order = list.New()
	}
}

// Len is the number of IPs remembered.
func (t *BanTable) Len() int { return len(t.byIP) }

// Lookup returns a copy of the record of ip.
func (t *BanTable) Lookup(ip string) (AuthRecord, bool) {
	e, ok := t.byIP[ip]
	if !ok {
		return AuthRecord{}, false
	}
	return *e.Value.(*AuthRecord), true
}

// Bans returns copies of the records banned at now, least recent failure first.
func (t *BanTable) Bans(now time.Time) []AuthRecord {
	var out []AuthRecord
	if t.order == nil {
		return out
	}
	for e := t.order.Front(); e != nil; e = e.Next() {
		if r := e.Value.(*AuthRecord); r.Banned(now) {
			out = append(out, *r)
		}
	}
	return out
}

// record applies a batch of failures observed by the proposer at at, under
// the cluster settings, and returns the bans it decided.
func (t *BanTable) record(at time.Time, failures []AuthFailure, set ClusterSettings) []Ban {
	t.init()
	now := at
	if now.Before(t.clock) {
		now = t.clock
	}
	t.clock = now
	t.expire(now, set)

	window := time.Duration(set.AuthFailWindowSec) * time.Second
	var bans []Ban
	for _, f := range failures {
		if f.IP == "" || f.Count <= 0 {
			continue
		}
		r := t.touch(f.IP, now)
		r.LastFailure = now
		if r.Banned(now) {
			continue // failures reported late, or by a node that had not seen the ban yet
		}
		if now.Sub(r.WindowStart) >= window {
			r.Failures, r.WindowStart = 0, now
		}
		r.Failures += f.Count
		if set.AuthFailThreshold <= 0 || r.Failures < set.AuthFailThreshold {
			continue
		}
		r.Offenses++
		r.BannedUntil = now.Add(banLength(r.Offenses, set))
		r.Failures, r.WindowStart = 0, now
		bans = append(bans, Ban{IP: r.IP, Until: r.BannedUntil, Offenses: r.Offenses})
	}
	return bans
}

// banLength is BanSec doubled for each earlier offense, capped at MaxBanSec.
func banLength(offenses int64, set ClusterSettings) time.Duration {
	maxSec := max(set.MaxBanSec, set.BanSec)
	sec := set.BanSec
	for i := int64(1); i < offenses && sec < maxSec; i++ {
		sec *= 2
	}
	return time.Duration(min(sec, maxSec)) * time.Second
}

// touch returns ip's record, made the most recent, creating it (and evicting
// the least recent record when the table is full) if needed.
func (t *BanTable) touch(ip string, now time.Time) *AuthRecord {
	if e, ok := t.byIP[ip]; ok {
		t.order.MoveToBack(e)
		return e.Value.(*AuthRecord)
	}
	for len(t.byIP) >= MaxAuthRecords {
		t.remove(t.victim(now))
	}
	r := &AuthRecord{IP: ip, WindowStart: now}
	t.byIP[ip] = t.order.PushBack(r)
	return r
}

// victim picks the record to evict from a full table: the least recent one
// not banned at now among the first evictScan, else the least recent.
func (t *BanTable) victim(now time.Time) *list.Element {
	e := t.order.Front()
	for i := 0; e != nil && i < evictScan; i, e = i+1, e.Next() {
		if !e.Value.(*AuthRecord).Banned(now) {
			return e
		}
	}
	return t.order.Front()
}

// evictScan bounds how far eviction looks past banned records.
const evictScan = 64

// expire forgets records whose last failure is older than the retention.
// Records are in last-failure order, so this stops at the first one kept.
func (t *BanTable) expire(now time.Time, set ClusterSettings) {
	retention := time.Duration(set.AuthFailWindowSec+max(set.MaxBanSec, set.BanSec)) * time.Second
	for e := t.order.Front(); e != nil; e = t.order.Front() {
		r := e.Value.(*AuthRecord)
		if now.Sub(r.LastFailure) < retention || r.Banned(now) {
			return
		}
		t.remove(e)
	}
}

func (t *BanTable) remove(e *list.Element) {
	delete(t.byIP, e.Value.(*AuthRecord).IP)
	t.order.Remove(e)
}

// banTableJSON is the serialized table: records in order, least recent first.
type banTableJSON struct {
	Clock   time.Time            `json:"clock"`
	Records []AuthRecord         `json:"records"`
	Batches map[string][]string  `json:"batches,omitempty"`
	BatchAt map[string]time.Time `json:"batch_at,omitempty"`
}

// MarshalJSON writes the records in their (deterministic) order.
func (t BanTable) MarshalJSON() ([]byte, error) {
	out := banTableJSON{Clock: t.clock, Records: []AuthRecord{}, Batches: t.batches, BatchAt: t.batchAt}
	if t.order != nil {
		out.Records = make([]AuthRecord, 0, t.order.Len())
		for e := t.order.Front(); e != nil; e = e.Next() {
			out.Records = append(out.Records, *e.Value.(*AuthRecord))
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON rebuilds the table and its order from a snapshot.
func (t *BanTable) UnmarshalJSON(data []byte) error {
	var in banTableJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	*t = BanTable{clock: in.Clock, batches: in.Batches, batchAt: in.BatchAt}
	t.init()
	for i := range in.Records {
		r := in.Records[i]
		if old, dup := t.byIP[r.IP]; dup {
			t.remove(old)
		}
		t.byIP[r.IP] = t.order.PushBack(&r)
	}
	return nil
}
