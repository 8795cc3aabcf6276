package broker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Transactions across a crash.
//
// The keeper reads uncommitted: a transaction's records reach the files before its commit, tagged
// with their producer id and epoch, and its markers after. When a producer commits a transaction
// (EndTxn), the broker holds the request until the keeper has written everything up to the end
// of every partition, then appends a commit intent to txns.log: the producer, the partitions the
// transaction wrote and the group offsets it committed (seen in its TxnOffsetCommit requests).
// Only then does the broker commit. On restore a transaction's records are committed if a commit
// marker follows them, aborted if an abort marker does, and otherwise committed if and only if
// its intent was written; its group offsets apply unless an abort marker follows. Outputs and
// the input offsets that produced them are thus restored together: a kill at any moment neither
// loses nor repeats a committed transaction.

const (
	txnLogFile = "txns.log"
	// txnHeader tags a transactional record in a record file (producer id and epoch).
	txnHeader     = "\x00veil.txn"
	markerPayload = 19 // i64 offset, i64 producer id, i16 epoch, u8 commit
	// topicIDKey prefixes a topic id (16 bytes) that stands for a topic name until resolved.
	topicIDKey = "\x00id:"
)

// txnIntent is one line of txns.log.
type txnIntent struct {
	Seq     int64       `json:"seq"`
	PID     int64       `json:"pid"`
	Epoch   int16       `json:"epoch"`
	Offsets keptOffsets `json:"offsets,omitempty"`
	Parts   []txnPart   `json:"parts,omitempty"`
}

// txnPart is a partition a transaction wrote: its records lie in [First, Pos).
type txnPart struct {
	Topic     string `json:"t"`
	Partition int32  `json:"p"`
	First     int64  `json:"first"`
	Pos       int64  `json:"pos"`
}

func encodeMarker(offset, pid int64, epoch int16, commit bool) []byte {
	b := make([]byte, 8, 8+markerPayload)
	b = binary.LittleEndian.AppendUint64(b, uint64(offset))
	b = binary.LittleEndian.AppendUint64(b, uint64(pid))
	b = binary.LittleEndian.AppendUint16(b, uint16(epoch))
	c := byte(0)
	if commit {
		c = 1
	}
	b = append(b, c)
	return frame(b[8:], b)
}

// isCommitMarker reads the type of a control record: key is version (i16) and type (i16, 0
// abort, 1 commit).
func isCommitMarker(r *kgo.Record) bool {
	return len(r.Key) >= 4 && binary.BigEndian.Uint16(r.Key[2:4]) == 1
}

// withTxnTag returns r with the producer tag appended to its headers.
func withTxnTag(r *kgo.Record) *kgo.Record {
	c := *r
	v := binary.LittleEndian.AppendUint64(nil, uint64(r.ProducerID))
	v = binary.LittleEndian.AppendUint16(v, uint16(r.ProducerEpoch))
	c.Headers = append(append([]kgo.RecordHeader(nil), r.Headers...), kgo.RecordHeader{Key: txnHeader, Value: v})
	return &c
}

// escapeTag returns r, with an empty reserved header appended if its own last header has the
// reserved key, so that untag gives the record back as it was and never takes it for tagged.
func escapeTag(r *kgo.Record) *kgo.Record {
	if len(r.Headers) == 0 || r.Headers[len(r.Headers)-1].Key != txnHeader {
		return r
	}
	c := *r
	c.Headers = append(append([]kgo.RecordHeader(nil), r.Headers...), kgo.RecordHeader{Key: txnHeader, Value: []byte{}})
	return &c
}

// untag strips the producer tag (and the escape, see escapeTag) of a decoded record into e.
func (e *logEntry) untag() {
	r := e.rec
	if r == nil {
		return
	}
	last := func() (kgo.RecordHeader, bool) {
		if len(r.Headers) == 0 {
			return kgo.RecordHeader{}, false
		}
		h := r.Headers[len(r.Headers)-1]
		return h, h.Key == txnHeader
	}
	if h, ok := last(); ok && len(h.Value) == 10 {
		r.Headers = r.Headers[:len(r.Headers)-1]
		e.txn, e.pid, e.epoch = true, int64(binary.LittleEndian.Uint64(h.Value[0:8])), int16(binary.LittleEndian.Uint16(h.Value[8:10]))
	}
	if h, ok := last(); ok && len(h.Value) == 0 {
		r.Headers = r.Headers[:len(r.Headers)-1]
	}
	if len(r.Headers) == 0 {
		r.Headers = nil
	}
}

// observeTxns installs the control functions that write commit intents.
func (k *keeper) observeTxns(c *kfake.Cluster) {
	c.ControlKey(kmsg.TxnOffsetCommit.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.TxnOffsetCommitRequest)
		k.pendMu.Lock()
		defer k.pendMu.Unlock()
		offs := k.pending[r.ProducerID]
		if offs == nil {
			offs = make(keptOffsets)
			k.pending[r.ProducerID] = offs
		}
		for _, t := range r.Topics {
			name := t.Topic
			if name == "" { // v6+ names topics by id, resolved in writeIntent
				name = topicIDKey + string(t.TopicID[:])
			}
			for _, p := range t.Partitions {
				if offs[r.Group] == nil {
					offs[r.Group] = make(map[string]map[int32]int64)
				}
				if offs[r.Group][name] == nil {
					offs[r.Group][name] = make(map[int32]int64)
				}
				offs[r.Group][name][p.Partition] = p.Offset
			}
		}
		return nil, nil, false
	})
	c.ControlKey(kmsg.EndTxn.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.EndTxnRequest)
		if !r.Commit {
			k.pendMu.Lock()
			delete(k.pending, r.ProducerID)
			k.pendMu.Unlock()
			return nil, nil, false
		}
		// Other connections are served meanwhile, the keeper's fetches among them.
		c.SleepControl(func() { k.writeIntent(r.ProducerID, r.ProducerEpoch) })
		return nil, nil, false
	})
}

// writeIntent waits until the keeper has written every partition up to its end (this
// transaction's records included), then appends the commit intent of pid to txns.log.
func (k *keeper) writeIntent(pid int64, epoch int16) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := k.adm.ListEndOffsets(ctx)
	for err == nil && !k.caughtUpTo(ends) {
		t := time.NewTimer(2 * time.Millisecond)
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-t.C:
		}
		t.Stop()
	}
	if err != nil {
		k.log.Warn("embedded broker: commit intent written before the keeper caught up", "err", err)
	}
	k.pendMu.Lock()
	offs := k.pending[pid]
	delete(k.pending, pid)
	k.pendMu.Unlock()
	for _, ts := range offs {
		for name, ps := range ts {
			id, ok := strings.CutPrefix(name, topicIDKey)
			if !ok || len(id) != 16 {
				continue
			}
			delete(ts, name)
			if ti := k.cluster.TopicIDInfo([16]byte([]byte(id))); ti != nil {
				ts[ti.Topic] = ps
			}
		}
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	k.seq++
	in := txnIntent{Seq: k.seq, PID: pid, Epoch: epoch, Offsets: offs}
	for key, pids := range k.open {
		if first, ok := pids[pid]; ok {
			in.Parts = append(in.Parts, txnPart{Topic: key.t, Partition: key.p, First: first, Pos: k.next[key]})
		}
	}
	b, _ := json.Marshal(in)
	if k.txlog == nil {
		f, err := os.OpenFile(filepath.Join(k.dir, txnLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			k.log.Error("embedded broker: opening the transaction log", "err", err)
			return
		}
		k.txlog = f
	}
	if _, err := k.txlog.Write(append(b, '\n')); err != nil {
		k.log.Error("embedded broker: writing a commit intent", "err", err)
	}
}

// readIntents reads txns.log; a torn last line is dropped.
func readIntents(dir string) ([]txnIntent, error) {
	b, err := os.ReadFile(filepath.Join(dir, txnLogFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []txnIntent
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var in txnIntent
		if json.Unmarshal(sc.Bytes(), &in) != nil {
			break
		}
		out = append(out, in)
	}
	return out, nil
}

// marker is a transaction marker found in a partition's file.
type marker struct {
	offset int64
	pid    int64
	commit bool
}

// resolve decides the transactional records of one partition: committed ones become plain
// records, aborted ones and markers become gaps. intents are the commit intents by producer.
func resolve(key tp, ents []logEntry, intents map[int64][]txnIntent) (out []logEntry, markers []marker) {
	out = make([]logEntry, len(ents))
	copy(out, ents)
	gap := func(i int) { out[i] = logEntry{gapFrom: ents[i].offset(), gapN: 1} }
	open := make(map[int64][]int)
	for i, e := range ents {
		switch {
		case e.marker:
			for _, j := range open[e.pid] {
				if !e.commit {
					gap(j)
				}
			}
			delete(open, e.pid)
			markers = append(markers, marker{e.gapFrom, e.pid, e.commit})
			gap(i)
		case e.txn:
			open[e.pid] = append(open[e.pid], i)
		}
	}
	for pid, idx := range open {
		first := ents[idx[0]].offset()
		committed := false
		for _, in := range intents[pid] {
			for _, p := range in.Parts {
				if p.Topic == key.t && p.Partition == key.p && p.First <= first && first < p.Pos && in.Epoch == ents[idx[0]].epoch {
					committed = true
				}
			}
		}
		if !committed {
			for _, j := range idx {
				gap(j)
			}
		}
	}
	for i := range out {
		out[i].txn, out[i].marker = false, false
	}
	return out, markers
}

// intentCommitted reports whether in's transaction committed, given the markers of each
// partition: the first marker of its producer after its records decides; none means the crash
// came before the markers were kept, after the intent was.
func intentCommitted(in txnIntent, markers map[tp][]marker) bool {
	for _, p := range in.Parts {
		for _, m := range markers[tp{p.Topic, p.Partition}] {
			if m.pid == in.PID && m.offset >= p.First {
				return m.commit
			}
		}
	}
	return true
}

// mergeIntents raises offs to the offsets of every committed intent.
func mergeIntents(offs keptOffsets, ins []txnIntent, markers map[tp][]marker) keptOffsets {
	if offs == nil {
		offs = make(keptOffsets)
	}
	for _, in := range ins {
		if !intentCommitted(in, markers) {
			continue
		}
		for g, ts := range in.Offsets {
			for t, ps := range ts {
				for p, at := range ps {
					if offs[g] == nil {
						offs[g] = make(map[string]map[int32]int64)
					}
					if offs[g][t] == nil {
						offs[g][t] = make(map[int32]int64)
					}
					if cur, ok := offs[g][t][p]; !ok || at > cur {
						offs[g][t][p] = at
					}
				}
			}
		}
	}
	return offs
}

// compactTxnLog rewrites txns.log without the intents of seq upTo or less whose offsets the saved
// offsets hold, keeping each producer's last intent, once compactEvery intents were written.
func (k *keeper) compactTxnLog(upTo int64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.seq-k.lastCompact < k.compactEvery {
		return nil
	}
	ins, err := readIntents(k.dir)
	if err != nil {
		return err
	}
	last := make(map[int64]int)
	for i, in := range ins {
		last[in.PID] = i
	}
	var buf bytes.Buffer
	for i, in := range ins {
		if in.Seq > upTo || last[in.PID] == i {
			b, _ := json.Marshal(in)
			buf.Write(append(b, '\n'))
		}
	}
	if k.txlog != nil {
		k.txlog.Close()
		k.txlog = nil // reopened by the next intent
	}
	if err := writeFileAtomic(filepath.Join(k.dir, txnLogFile), buf.Bytes()); err != nil {
		return err
	}
	k.lastCompact = k.seq
	return nil
}

// compactIntents keeps the last intent of each producer (the only one that can still decide
// records left open in a file: a producer's later transaction starts after the markers of its
// earlier one were written) and rewrites txns.log with them.
func compactIntents(dir string, ins []txnIntent) error {
	last := make(map[int64]int)
	for i, in := range ins {
		last[in.PID] = i
	}
	var buf bytes.Buffer
	for i, in := range ins {
		if last[in.PID] == i {
			b, _ := json.Marshal(in)
			buf.Write(append(b, '\n'))
		}
	}
	return writeFileAtomic(filepath.Join(dir, txnLogFile), buf.Bytes())
}
