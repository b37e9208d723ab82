package heartbeat

import (
	"bytes"
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hailsd/hail/events"
	"github.com/nats-io/nats.go"
)

// Errors a Result may carry.
var (
	// ErrNoResponders: nothing is subscribed to the instance's heartbeat
	// subject; the server said so at once.
	ErrNoResponders = errors.New("no responders")
	// ErrTimeout: no answer within the reply timeout.
	ErrTimeout = errors.New("no reply within timeout")
	// ErrBadReply: something answered, but not with a HeartbeatReply for
	// this instance.
	ErrBadReply = errors.New("bad heartbeat reply")
	// ErrDisconnected: the tracker's own connection was down during the
	// round, so silence says nothing about the instance.
	ErrDisconnected = errors.New("tracker disconnected during the round")
	// ErrOverloaded: answers were waiting, read off the wire but not yet
	// handled, when the round ended even after a grace period: the node
	// was too slow to read them, so silence says nothing about the
	// instance.
	ErrOverloaded = errors.New("tracker too slow to read the round's answers")
)

// Result is one instance's answer to one heartbeat.
type Result struct {
	ID    string
	Reply events.HeartbeatReply // valid when Err is nil
	Err   error
	RTT   time.Duration // time to the answer, or to the no-responders notice
	// Late, on a result that is not an answer, is the status the
	// instance reported in its answer to the round before, which came
	// after that round's timeout (empty: none came). It was alive then; a
	// node or bus too slow to carry answers in time is not its fault.
	Late events.Status
}

// Void reports a result that must not be judged: the tracker, not the
// instance, was cut off.
func (r Result) Void() bool {
	return errors.Is(r.Err, ErrDisconnected) || errors.Is(r.Err, ErrOverloaded)
}

// Verdict turns a result into what the judge needs.
func (r Result) Verdict() Verdict {
	if r.Err != nil {
		return Verdict{}
	}
	return Verdict{Answered: true, Reported: r.Reply.Status}
}

// Tracker heartbeats many instances at once. Each round publishes every
// heartbeat (at once, or paced: Pace) with a reply subject under one
// wildcard inbox and then collects answers as they come, so one slow or
// dead instance costs the others nothing and a round over a thousand
// instances costs one subscription, not a thousand requests.
type Tracker struct {
	nc       *nats.Conn
	subjects events.Subjects
	node     string
	timeout  func() time.Duration // read at each round, so it may change between rounds
	// inbox: reply subjects are <inbox><seq>.<index>.<key>, key a random
	// number per heartbeat. An instance sees its own reply subject, and
	// the sequence number and index of the others' are easy to guess: the
	// key is not, so nobody can answer for another instance (nor have
	// someone else, a confused deputy, answer for it).
	inbox string
	// keys draws the keys; only Round uses it, and rounds do not
	// overlap. ChaCha8 is a cryptographically strong generator, cheap
	// enough for one draw per heartbeat.
	keys *rand.ChaCha8
	sub  *nats.Subscription
	seq  atomic.Uint64
	cur  atomic.Pointer[round]
	// last is the round before cur, whose late answers are kept for the
	// results of the next.
	last   atomic.Pointer[round]
	closed sync.Once
	kick   chan struct{}
	// pace, when not 0, is the most beats a second a round sends
	// (Pace); read by Round only.
	pace int
	// every is Run's interval, which bounds a paced round's spread; 0
	// for rounds not run by Run.
	every atomic.Int64
	// replies are each instance's last answer, raw and decoded: most
	// answer the same bytes round after round, and decoding is most of
	// what reading an answer costs. Only onReply touches it (one
	// goroutine: the inbox subscription's).
	replies map[string]lastReply
}

type lastReply struct {
	raw   []byte
	reply events.HeartbeatReply
}

type round struct {
	seq  uint64
	ids  []string
	keys []uint64 // each heartbeat's reply key, by index
	// start is when the first beat went out; a paced round's chunk c of
	// paceChunk beats is due gap*c after it, and sent is when each chunk
	// went out (Unix nanoseconds; 0 until then): later than due when the
	// node is short of CPU, and each chunk's timeout runs from its own.
	start time.Time
	gap   time.Duration
	sent  []atomic.Int64
	// closed: the beats of index below it are past their timeout (a
	// paced round closes its chunks one by one), and an answer to one
	// is late.
	closed    int
	mu        sync.Mutex
	results   []Result
	answered  []bool
	remaining int
	done      chan struct{}
	over      bool
	late      map[int]events.Status // answers that came after the round was over, by index
}

// NewTracker subscribes the tracker's reply inbox on nc. node is the
// discovery node's id, sent in every heartbeat; timeout() bounds the wait
// for replies, read at the start of each round.
func NewTracker(nc *nats.Conn, subjects events.Subjects, node string, timeout func() time.Duration) (*Tracker, error) {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("seed heartbeat reply keys: %w", err)
	}
	t := &Tracker{nc: nc, subjects: subjects, node: node, timeout: timeout, inbox: nc.NewRespInbox() + ".", kick: make(chan struct{}, 1),
		keys: rand.NewChaCha8(seed), replies: map[string]lastReply{}}
	sub, err := nc.Subscribe(t.inbox+">", t.onReply)
	if err != nil {
		return nil, fmt.Errorf("subscribe heartbeat inbox: %w", err)
	}
	// A round of thousands of answers arrives in a burst.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, fmt.Errorf("heartbeat inbox limits: %w", err)
	}
	t.sub = sub
	return t, nil
}

// paceChunk is how many beats a paced round sends at once.
const paceChunk = 512

// Pace spreads each round's beats, sent paceChunk at a time, over
// n/perSecond, but over no more than half the round's timeout nor what
// the interval leaves after the timeout (Run's): a round too large for
// perSecond within that bound goes out faster, evenly over the bound. A
// round of thousands sent at once reaches the servers and the instances
// as one burst, and the answers at its tail wait behind it: on two shared
// cores the burst of 16,000 beats takes longer to answer than the
// timeout. Spread, the same beats meet less of a queue. Each chunk has
// the timeout from its own sending (its answers timed from then, and
// closed once it passes, unless answers wait unread: the node is then
// what is late, as for a whole round); the round's judgement comes the
// spread later. 0 (the default) sends every beat at once. Call it before
// Run.
func (t *Tracker) Pace(perSecond int) { t.pace = max(perSecond, 0) }

// Inbox is the prefix of the tracker's reply subjects, with its trailing
// dot: every instance sees it, so nobody may have discovery answer there
// (discovery's reply rule).
func (t *Tracker) Inbox() string { return t.inbox }

// Close unsubscribes the inbox; safe to call twice.
func (t *Tracker) Close() error {
	var err error
	t.closed.Do(func() { err = t.sub.Unsubscribe() })
	return err
}

// Round heartbeats every target once and returns one result per target,
// in order, after all have answered or the timeout has passed. A target is
// what follows P.hb. (events.HeartbeatTarget): an id, or <service>.<id>
// for a scoped instance; results carry the id. Rounds must not overlap;
// Run calls them one after another.
func (t *Tracker) Round(ctx context.Context, targets []string) []Result {
	n := len(targets)
	if n == 0 {
		return nil
	}
	// Unscoped targets are their ids: the slice is copied only when a
	// scoped one needs its id cut out.
	ids, copied := targets, false
	for i, tg := range targets {
		if dot := strings.LastIndexByte(tg, '.'); dot >= 0 {
			if !copied {
				ids, copied = append([]string(nil), targets...), true
			}
			ids[i] = tg[dot+1:]
		}
	}
	r := &round{
		seq:       t.seq.Add(1),
		ids:       ids,
		keys:      make([]uint64, n),
		results:   make([]Result, n),
		answered:  make([]bool, n),
		remaining: n,
		done:      make(chan struct{}),
	}
	// The beat is the same for every instance, so it is encoded once.
	payload, err := json.Marshal(events.Heartbeat{Node: t.node, Seq: r.seq, TS: time.Now().UTC()})
	if err != nil {
		panic(fmt.Sprintf("encode heartbeat: %v", err)) // a struct of plain fields always encodes
	}
	connected, reconnects := t.nc.IsConnected(), t.nc.Stats().Reconnects
	prefix := t.inbox + strconv.FormatUint(r.seq, 10) + "."
	timeout := t.timeout()
	chunks := (n + paceChunk - 1) / paceChunk
	if t.pace > 0 && chunks > 1 {
		spread := min(time.Duration(n)*time.Second/time.Duration(t.pace), timeout/2)
		if every := time.Duration(t.every.Load()); every > 0 {
			spread = min(spread, max(every-timeout, 0))
		}
		r.gap = spread / time.Duration(chunks-1)
	}
	r.sent = make([]atomic.Int64, chunks)
	r.start = time.Now() // before the round is visible to onReply, which reads it
	prev := t.last.Load()
	t.cur.Store(r)
	defer t.cur.CompareAndSwap(r, nil)
	for i := range r.keys {
		r.keys[i] = t.keys.Uint64()
	}
	reply := make([]byte, 0, len(prefix)+32)
	var wait *time.Timer
	defer func() {
		if wait != nil {
			wait.Stop()
		}
	}()
	for i, id := range ids {
		if i%paceChunk == 0 {
			if r.gap > 0 && i > 0 && !pauseUntil(ctx, r.done, &wait, r.start.Add(time.Duration(i/paceChunk)*r.gap)) {
				break // ctx ended: the round's results are not judged
			}
			r.sent[i/paceChunk].Store(time.Now().UnixNano())
		}
		reply = strconv.AppendInt(append(reply[:0], prefix...), int64(i), 10)
		reply = strconv.AppendUint(append(reply, '.'), r.keys[i], 36)
		msg := &nats.Msg{Subject: t.subjects.Heartbeat(targets[i]), Reply: string(reply), Data: payload}
		if err := t.nc.PublishMsg(msg); err != nil {
			r.finish(i, Result{ID: id, Err: fmt.Errorf("publish heartbeat: %w", err)})
		}
	}
	// A paced round's chunks but the last close at their timeouts, each
	// only if no answer waits unread (else the node is what is late: the
	// round's end decides, below).
	for c := 0; r.gap > 0 && c < chunks-1; c++ {
		if !pauseUntil(ctx, r.done, &wait, r.sentAt(c*paceChunk).Add(timeout)) {
			break // all answered, or ctx ended
		}
		if pending, _, err := t.sub.Pending(); err == nil && pending == 0 {
			r.mu.Lock()
			r.closed = (c + 1) * paceChunk
			r.mu.Unlock()
		}
	}
	timer := time.NewTimer(time.Until(r.sentAt(n - 1).Add(timeout)))
	defer timer.Stop()
	select {
	case <-r.done:
	case <-timer.C:
	case <-ctx.Done():
	}
	// Answers the client has read off the wire but not yet handed to
	// onReply came in time; the node is what is late. They get up to one
	// more timeout to be read; any still unread then make the round the
	// node's fault, not the silent instances'.
	overloaded := ctx.Err() == nil && !t.drained(r, timeout)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.over = true
	silence := ErrTimeout
	switch {
	case !connected || !t.nc.IsConnected() || t.nc.Stats().Reconnects != reconnects:
		silence = ErrDisconnected
	case overloaded:
		silence = ErrOverloaded
	}
	for i, ok := range r.answered {
		if !ok {
			err := silence
			if i < r.closed && silence == ErrOverloaded {
				err = ErrTimeout // its chunk closed with nothing unread
			}
			r.results[i] = Result{ID: ids[i], Err: err, RTT: time.Since(r.sentAt(i))}
		}
	}
	if prev != nil {
		prev.lateTo(r.results)
	}
	t.last.Store(r)
	return r.results
}

// sentAt is when the beat of index idx was sent, to time its answer.
func (r *round) sentAt(idx int) time.Time {
	if ns := r.sent[idx/paceChunk].Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return r.start // not sent: the round ended first
}

// pauseUntil waits until at on *w (made on first use); false if ctx
// ends or done closes first.
func pauseUntil(ctx context.Context, done <-chan struct{}, w **time.Timer, at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		select {
		case <-done:
			return false
		default:
			return ctx.Err() == nil
		}
	}
	if *w == nil {
		*w = time.NewTimer(d)
	} else {
		(*w).Reset(d)
	}
	select {
	case <-(*w).C:
		return true
	case <-done:
		return false
	case <-ctx.Done():
		return false
	}
}

// lateTo marks the results that are not answers with the late answers r
// had from the same instances.
func (r *round) lateTo(results []Result) {
	r.mu.Lock()
	late := r.late
	r.late = nil // a late answer counts once
	r.mu.Unlock()
	if len(late) == 0 {
		return
	}
	byID := make(map[string]events.Status, len(late))
	for idx, status := range late {
		byID[r.ids[idx]] = status
	}
	for i := range results {
		if results[i].Err != nil && !results[i].Void() {
			results[i].Late = byID[results[i].ID]
		}
	}
}

// drained waits, up to grace, until the answers waiting in the inbox have
// been handled or the round has all its answers; false if some are still
// waiting.
func (t *Tracker) drained(r *round, grace time.Duration) bool {
	deadline := time.Now().Add(grace)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if n, _, err := t.sub.Pending(); err != nil || n == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-r.done:
			return true
		case <-tick.C:
		}
	}
}

func (t *Tracker) onReply(m *nats.Msg) {
	rest, ok := strings.CutPrefix(m.Subject, t.inbox)
	if !ok {
		return
	}
	seqText, rest, ok1 := strings.Cut(rest, ".")
	idxText, keyText, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return
	}
	seq, err1 := strconv.ParseUint(seqText, 10, 64)
	idx, err2 := strconv.Atoi(idxText)
	key, err3 := strconv.ParseUint(keyText, 36, 64)
	if err1 != nil || err2 != nil || err3 != nil || idx < 0 {
		return
	}
	// An answer to this round, or a late one to the round before (kept
	// as a sign of life for the next round's results); older ones, and
	// any without the heartbeat's key, are dropped.
	for _, r := range [2]*round{t.cur.Load(), t.last.Load()} {
		if r != nil && seq == r.seq && idx < len(r.ids) && r.keys[idx] == key {
			r.finish(idx, t.readAnswer(m, r, idx))
			return
		}
	}
}

// readAnswer reads m, the answer to r's heartbeat number idx.
func (t *Tracker) readAnswer(m *nats.Msg, r *round, idx int) Result {
	id := r.ids[idx]
	res := Result{ID: id, RTT: time.Since(r.sentAt(idx))}
	if _, text, isErr := events.ReplyError(m); isErr {
		// Someone's error reply (a node's 400, say) is no sign of this
		// instance's life.
		res.Err = fmt.Errorf("%w: an error reply: %s", ErrBadReply, truncate(text))
		return res
	}
	switch {
	case len(m.Data) == 0 && m.Header.Get("Status") == "503":
		res.Err = ErrNoResponders
	case len(m.Data) == 0:
		// A bare reply is still a sign of life; it just reports nothing.
		res.Reply = events.HeartbeatReply{ID: id, Status: events.Passing}
	default:
		if last, ok := t.replies[id]; ok && bytes.Equal(last.raw, m.Data) {
			res.Reply = last.reply
			return res
		}
		reply, err := events.DecodeHeartbeatReply(m.Data)
		switch {
		case err != nil:
			res.Err = fmt.Errorf("%w: %v", ErrBadReply, err)
		case reply.ID != "" && reply.ID != id:
			res.Err = fmt.Errorf("%w: answered by %s", ErrBadReply, truncate(reply.ID))
		case reply.ID == "" && errorBody(m.Data):
			res.Err = fmt.Errorf("%w: an error reply", ErrBadReply)
		default:
			res.Reply = reply
			// Checks hold a slice, which the judged record keeps: only
			// replies without them are shared between rounds.
			if len(reply.Checks) == 0 {
				if len(t.replies) > 2*len(r.ids)+1024 {
					clear(t.replies) // instances gone since: start afresh
				}
				t.replies[id] = lastReply{raw: m.Data, reply: reply}
			}
		}
	}
	return res
}

// errorBody reports an error reply's payload ({"ok":false,"error":...})
// without its headers: it decodes as a HeartbeatReply with nothing in it,
// but it is no answer.
func errorBody(data []byte) bool {
	if !bytes.Contains(data, []byte(`"error"`)) {
		return false
	}
	var e events.ErrorBody
	return json.Unmarshal(data, &e) == nil && e.Error != ""
}

// truncate bounds a value an answer carries, for an error's text.
func truncate(s string) string {
	if len(s) > 64 {
		return events.CutOutput(s, 64) + "..."
	}
	return s
}

// finish records an answer: the result, or, once the round is over or
// the beat's chunk closed, a late answer.
func (r *round) finish(idx int, res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.answered[idx] {
		return
	}
	if r.over || idx < r.closed {
		if res.Err == nil {
			if r.late == nil {
				r.late = make(map[int]events.Status)
			}
			r.late[idx] = cmp.Or(res.Reply.Status, events.Passing)
		}
		return
	}
	r.answered[idx] = true
	r.results[idx] = res
	r.remaining--
	if r.remaining == 0 {
		close(r.done)
	}
}

// Run heartbeats targets() every interval() until ctx ends and hands each
// round's results to handle, on the Run goroutine. The first round starts
// at once; a changed interval() takes effect from the next tick.
func (t *Tracker) Run(ctx context.Context, interval func() time.Duration, targets func() []string, handle func(time.Time, []Result)) {
	every := interval()
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		if d := interval(); d != every {
			every = d
			ticker.Reset(every)
		}
		t.every.Store(int64(every))
		start := time.Now()
		results := t.Round(ctx, targets())
		if ctx.Err() != nil {
			return
		}
		handle(start, results)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-t.kick:
			ticker.Reset(every)
		}
	}
}

// Kick makes Run start its next round now instead of at the next tick: a
// node that has just taken instances over heartbeats them at once.
func (t *Tracker) Kick() {
	select {
	case t.kick <- struct{}{}:
	default: // a kick is pending already
	}
}
