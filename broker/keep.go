package broker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// keeper keeps the embedded broker's non-raw state in a directory; see Embedded.
type keeper struct {
	cluster  *kfake.Cluster
	dir      string
	interval time.Duration
	log      *slog.Logger
	cl       *kgo.Client
	adm      *kadm.Client

	mu    sync.Mutex // guards files, next, ids
	files map[tp]*keptFile
	next  map[tp]int64 // offset after the last kept record
	ids   map[string]kadm.TopicID

	stop     context.CancelFunc
	pollDone chan struct{}
	syncDone chan struct{}
	lastOff  []byte
	lastTop  []byte
}

type tp struct {
	t string
	p int32
}

type keptFile struct {
	f *os.File
	w *bufio.Writer
}

type keptTopic struct {
	Name       string            `json:"name"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
}

// keptOffsets is group → topic → partition → offset.
type keptOffsets map[string]map[string]map[int32]int64

const (
	topicsFile  = "topics.json"
	offsetsFile = "offsets.json"
	recordsDir  = "records"
	kfakeDefRet = 7 * 24 * time.Hour // kfake's default retention.ms
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

func startKeeper(ctx context.Context, c *kfake.Cluster, addrs []string, dir string, interval time.Duration, log *slog.Logger) (*keeper, error) {
	if err := os.MkdirAll(filepath.Join(dir, recordsDir), 0o700); err != nil {
		return nil, fmt.Errorf("creating broker data directory: %w", err)
	}
	k := &keeper{
		cluster: c, dir: dir, interval: interval, log: log,
		files: make(map[tp]*keptFile), next: make(map[tp]int64), ids: make(map[string]kadm.TopicID),
	}
	if err := k.restore(ctx, addrs); err != nil {
		return nil, fmt.Errorf("restoring embedded broker state from %s: %w", dir, err)
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addrs...),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics(".*"),
		kgo.ConsumeExcludeTopics(`^`+strings.ReplaceAll(RawPrefix, ".", `\.`)+`.*`, `^__.*`),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // transaction markers take offsets: kept as gaps
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMinAge(100*time.Millisecond),
		kgo.MetadataMaxAge(interval),
	)
	if err != nil {
		return nil, fmt.Errorf("creating broker keeper client: %w", err)
	}
	k.cl, k.adm = cl, kadm.NewClient(cl)
	runCtx, stop := context.WithCancel(context.Background())
	k.stop = stop
	k.pollDone, k.syncDone = make(chan struct{}), make(chan struct{})
	go k.poll(runCtx)
	go k.syncLoop(runCtx)
	return k, nil
}

// poll appends every committed record of a kept topic to its partition file.
func (k *keeper) poll(ctx context.Context) {
	defer close(k.pollDone)
	for ctx.Err() == nil {
		fs := k.cl.PollFetches(ctx)
		if err := k.write(fs); err != nil {
			k.log.Error("keeping broker records", "err", err)
		}
	}
}

func (k *keeper) write(fs kgo.Fetches) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var errs []error
	touched := make(map[*keptFile]struct{})
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if IsRaw(p.Topic) || len(p.Records) == 0 {
			return // raw records never reach the disk
		}
		key := tp{p.Topic, p.Partition}
		keepValues := isKept(p.Topic)
		var buf []byte
		gapFrom, gapN := int64(0), int64(0)
		flushGap := func() {
			if gapN > 0 {
				buf = append(buf, encodeGap(gapFrom, gapN)...)
				gapN = 0
			}
		}
		addGap := func(from, n int64) {
			if gapN > 0 && gapFrom+gapN == from {
				gapN += n
				return
			}
			flushGap()
			gapFrom, gapN = from, n
		}
		next := k.next[key]
		for _, r := range p.Records {
			if r.Offset < next {
				continue // restored on start, already in the file
			}
			if r.Offset > next {
				addGap(next, r.Offset-next) // aborted records, or records before the log start
			}
			if r.Attrs.IsControl() || !keepValues {
				addGap(r.Offset, 1)
			} else {
				flushGap()
				buf = append(buf, encodeRecord(r, r.Offset)...)
			}
			next = r.Offset + 1
		}
		flushGap()
		if len(buf) == 0 {
			return
		}
		f, err := k.file(key)
		if err != nil {
			errs = append(errs, err)
			return
		}
		if _, err := f.w.Write(buf); err != nil {
			errs = append(errs, err)
			return
		}
		touched[f] = struct{}{}
		k.next[key] = next
	})
	for f := range touched {
		if err := f.w.Flush(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// file opens (appending) the file of key; k.mu is held.
func (k *keeper) file(key tp) (*keptFile, error) {
	if f := k.files[key]; f != nil {
		return f, nil
	}
	f, err := os.OpenFile(k.recordPath(key), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	kf := &keptFile{f: f, w: bufio.NewWriterSize(f, 64<<10)}
	k.files[key] = kf
	return kf, nil
}

func (k *keeper) recordPath(key tp) string {
	return filepath.Join(k.dir, recordsDir, url.PathEscape(key.t)+"-"+strconv.Itoa(int(key.p))+".log")
}

func (k *keeper) syncLoop(ctx context.Context) {
	defer close(k.syncDone)
	t := time.NewTicker(k.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sctx, cancel := context.WithTimeout(ctx, k.interval)
			if err := k.sync(sctx); err != nil && ctx.Err() == nil {
				k.log.Warn("saving embedded broker state", "err", err)
			}
			cancel()
		}
	}
}

// sync writes topics.json and offsets.json, and forgets the records of deleted or recreated topics.
func (k *keeper) sync(ctx context.Context) error {
	tds, err := k.adm.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("listing topics: %w", err)
	}
	var topics []keptTopic
	present := make(map[string]kadm.TopicID)
	for _, td := range tds.Sorted() {
		if td.Err != nil || td.IsInternal || strings.HasPrefix(td.Topic, "__") {
			continue
		}
		present[td.Topic] = td.ID
		kt := keptTopic{Name: td.Topic, Partitions: int32(len(td.Partitions))}
		if ti := k.cluster.TopicInfo(td.Topic); ti != nil {
			for key, v := range ti.Configs {
				if v != nil {
					if kt.Configs == nil {
						kt.Configs = make(map[string]string)
					}
					kt.Configs[key] = *v
				}
			}
		}
		topics = append(topics, kt)
	}
	k.forgetGone(present)
	if err := k.writeJSON(topicsFile, topics, &k.lastTop); err != nil {
		return err
	}
	offs, err := k.groupOffsets(ctx)
	if err != nil {
		return err
	}
	return k.writeJSON(offsetsFile, offs, &k.lastOff)
}

func (k *keeper) forgetGone(present map[string]kadm.TopicID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	gone := make(map[string]bool)
	for t, id := range k.ids {
		if nid, ok := present[t]; !ok || nid != id {
			gone[t] = true
		}
	}
	for key, f := range k.files {
		if gone[key.t] {
			f.f.Close()
			delete(k.files, key)
		}
	}
	for key := range k.next {
		if gone[key.t] {
			delete(k.next, key)
			os.Remove(k.recordPath(key))
		}
	}
	k.ids = present
}

func (k *keeper) groupOffsets(ctx context.Context) (keptOffsets, error) {
	groups, err := k.adm.ListGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing groups: %w", err)
	}
	out := make(keptOffsets)
	if len(groups) == 0 {
		return out, nil
	}
	for g, r := range k.adm.FetchManyOffsets(ctx, groups.Groups()...) {
		if r.Err != nil {
			return nil, fmt.Errorf("fetching offsets of group %s: %w", g, r.Err)
		}
		r.Fetched.Each(func(o kadm.OffsetResponse) {
			if o.Err != nil || o.At < 0 || IsRaw(o.Topic) {
				return
			}
			if out[g] == nil {
				out[g] = make(map[string]map[int32]int64)
			}
			if out[g][o.Topic] == nil {
				out[g][o.Topic] = make(map[int32]int64)
			}
			out[g][o.Topic][o.Partition] = o.At
		})
	}
	return out, nil
}

// writeJSON atomically replaces name with v, unless v encodes to *last.
func (k *keeper) writeJSON(name string, v any, last *[]byte) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if bytes.Equal(b, *last) {
		return nil
	}
	if err := writeFileAtomic(filepath.Join(k.dir, name), b); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	*last = b
	return nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// close drains the committed records still in flight (until nothing new arrives for a moment,
// every kept partition is caught up, or ctx is done), writes the state files and closes the files.
func (k *keeper) close(ctx context.Context) error {
	k.stop()
	<-k.pollDone
	<-k.syncDone
	for quiet := 0; quiet < 2 && ctx.Err() == nil; {
		pctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		fs := k.cl.PollFetches(pctx)
		cancel()
		if fs.NumRecords() == 0 {
			if k.caughtUp(ctx) {
				break
			}
			quiet++
			continue
		}
		quiet = 0
		if err := k.write(fs); err != nil {
			k.log.Error("keeping broker records", "err", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := k.sync(sctx)
	k.mu.Lock()
	for key, f := range k.files {
		err = errors.Join(err, f.w.Flush(), f.f.Sync(), f.f.Close())
		delete(k.files, key)
	}
	k.mu.Unlock()
	k.cl.Close()
	return err
}

// caughtUp reports whether every kept partition's file reaches its last stable offset.
func (k *keeper) caughtUp(ctx context.Context) bool {
	lso, err := k.adm.ListCommittedOffsets(ctx)
	if err != nil {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	ok := true
	lso.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && !IsRaw(o.Topic) && !strings.HasPrefix(o.Topic, "__") && o.Offset > 0 && k.next[tp{o.Topic, o.Partition}] < o.Offset {
			ok = false
		}
	})
	return ok
}

// restore recreates the topics, produces the kept records back at their own offsets, fills
// every gap (transaction markers, aborted records, records of topics whose values are not kept)
// with transaction markers, and commits the group offsets as they were. It rewrites the record
// files without the records dropped by retention.
func (k *keeper) restore(ctx context.Context, addrs []string) error {
	var topics []keptTopic
	if ok, err := readJSON(filepath.Join(k.dir, topicsFile), &topics); err != nil || !ok {
		return err
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addrs...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.DisableIdempotentWrite(),
		kgo.RequiredAcks(kgo.LeaderAck()),
		kgo.MaxBufferedRecords(fillerChunk+1),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	restored := make(map[tp]bool)
	now := time.Now()
	for _, t := range topics {
		if IsRaw(t.Name) {
			continue // empty anyway; EnsureTopics recreates it with the TTL configured now
		}
		if err := k.cluster.CreateTopic(t.Name, t.Partitions, t.Configs); err != nil {
			return fmt.Errorf("creating topic %s: %w", t.Name, err)
		}
		ret := kfakeDefRet
		if v, ok := t.Configs["retention.ms"]; ok {
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
				ret = time.Duration(ms) * time.Millisecond
			}
		}
		for p := range t.Partitions {
			key := tp{t.Name, p}
			ents, err := readLog(k.recordPath(key))
			if err != nil {
				return err
			}
			if !isKept(t.Name) {
				ents = gapsOnly(ents) // a file of an older version may hold values: drop them
			}
			ents, start, end := trimExpired(ents, now, ret)
			if err := k.restorePartition(ctx, cl, key, ents, start); err != nil {
				return fmt.Errorf("restoring %s/%d: %w", t.Name, p, err)
			}
			var buf bytes.Buffer
			if start > 0 {
				buf.Write(encodeGap(0, start))
			}
			for _, e := range ents {
				buf.Write(e.encode())
			}
			if err := writeFileAtomic(k.recordPath(key), buf.Bytes()); err != nil {
				return err
			}
			restored[key] = true
			k.next[key] = end
		}
	}
	// Record files of topics that no longer exist are dropped.
	ents, _ := os.ReadDir(filepath.Join(k.dir, recordsDir))
	known := make(map[string]bool)
	for key := range restored {
		known[filepath.Base(k.recordPath(key))] = true
	}
	for _, e := range ents {
		if !known[e.Name()] {
			os.Remove(filepath.Join(k.dir, recordsDir, e.Name()))
		}
	}

	var offs keptOffsets
	if _, err := readJSON(filepath.Join(k.dir, offsetsFile), &offs); err != nil {
		return err
	}
	adm := kadm.NewClient(cl)
	for g, ts := range offs {
		commit := make(kadm.Offsets)
		for t, ps := range ts {
			for p, at := range ps {
				if restored[tp{t, p}] {
					commit.Add(kadm.Offset{Topic: t, Partition: p, At: at, LeaderEpoch: -1})
				}
			}
		}
		if len(commit) == 0 {
			continue
		}
		if err := adm.CommitAllOffsets(ctx, g, commit); err != nil {
			return fmt.Errorf("committing restored offsets of group %s: %w", g, err)
		}
	}
	k.log.Info("restored embedded broker state", "topics", len(topics), "groups", len(offs))
	return nil
}

// fillerChunk bounds the placeholder records produced in one request.
const fillerChunk = 10_000

// restorePartition writes a partition back so that every offset is what it was: offsets below
// start are filled with empty records and then deleted (as retention had deleted them), kept
// records are produced back, and gaps become commit markers of markerPID (a control batch, which
// takes one offset and no consumer ever sees, as the markers and aborted records it stands for).
func (k *keeper) restorePartition(ctx context.Context, cl *kgo.Client, key tp, ents []logEntry, start int64) error {
	if start > 0 {
		for done := int64(0); done < start; {
			n := min(start-done, fillerChunk)
			recs := make([]*kgo.Record, n)
			for i := range recs {
				recs[i] = &kgo.Record{Topic: key.t, Partition: key.p}
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				return fmt.Errorf("filling offsets below the log start: %w", err)
			}
			done += n
		}
		if err := k.cluster.DeleteRecords(key.t, key.p, start); err != nil {
			return fmt.Errorf("moving the log start to %d: %w", start, err)
		}
	}
	var run []*kgo.Record
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		want := make([]int64, len(run))
		for i, r := range run {
			want[i] = r.Offset
			r.Topic, r.Partition = key.t, key.p
		}
		if err := cl.ProduceSync(ctx, run...).FirstErr(); err != nil {
			return fmt.Errorf("producing kept records: %w", err)
		}
		for i, r := range run {
			if r.Offset != want[i] {
				return fmt.Errorf("kept record of offset %d came back at %d", want[i], r.Offset)
			}
		}
		run = run[:0]
		return nil
	}
	for _, e := range ents {
		if e.rec != nil {
			run = append(run, e.rec)
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		if err := k.writeMarkers(ctx, cl, key, e.gapFrom, e.gapN); err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return nil
}

// markerPID is the producer id of the commit markers that stand for gaps. Committing a producer
// id that has no open transaction changes nothing but the offset.
const markerPID = math.MaxInt64 - 1

// writeMarkers appends n commit markers to key's partition, expecting the first at offset from.
func (k *keeper) writeMarkers(ctx context.Context, cl *kgo.Client, key tp, from, n int64) error {
	pi := k.cluster.PartitionInfo(key.t, key.p)
	if pi == nil {
		return fmt.Errorf("partition vanished")
	}
	if pi.HighWatermark != from {
		return fmt.Errorf("gap at offset %d, but the partition ends at %d", from, pi.HighWatermark)
	}
	for done := int64(0); done < n; {
		c := min(n-done, fillerChunk)
		parts := make([]int32, c)
		for i := range parts {
			parts[i] = key.p
		}
		req := kmsg.NewPtrWriteTxnMarkersRequest()
		m := kmsg.NewWriteTxnMarkersRequestMarker()
		m.ProducerID, m.Committed = markerPID, true
		mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
		mt.Topic, mt.Partitions = key.t, parts
		m.Topics = append(m.Topics, mt)
		req.Markers = append(req.Markers, m)
		resp, err := req.RequestWith(ctx, cl.Broker(int(pi.Leader)))
		if err != nil {
			return fmt.Errorf("writing gap markers: %w", err)
		}
		for _, rm := range resp.Markers {
			for _, rt := range rm.Topics {
				for _, rp := range rt.Partitions {
					if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
						return fmt.Errorf("writing gap markers: %w", err)
					}
				}
			}
		}
		done += c
	}
	if pi := k.cluster.PartitionInfo(key.t, key.p); pi == nil || pi.HighWatermark != from+n {
		return fmt.Errorf("gap markers from %d did not end the partition at %d", from, from+n)
	}
	return nil
}

func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decoding %s: %w", filepath.Base(path), err)
	}
	return true, nil
}

// isKept reports whether the records of topic are kept in the data directory: only veil's own
// sealed or redacted topics (encrypted.*, redacted.*, the dead-letter and audit topics). Any other
// topic, an integration topic holding decrypted deliveries among them, keeps its offsets (as
// gaps) but never its records.
func isKept(topic string) bool {
	return strings.HasPrefix(topic, EncryptedPrefix) || strings.HasPrefix(topic, RedactedPrefix) ||
		topic == DeadLetterTopic || topic == AuditTopic
}

// Frame: u32 payload length, u32 CRC-32C of the payload, payload. Little-endian throughout.
// A record payload is i64 offset, i64 timestamp (ms), bytes key, bytes value, u32 header count,
// then per header bytes key, bytes value ("bytes" is an i32 length, -1 for nil, and the bytes):
// at least 28 bytes. A gap payload is exactly 16 bytes, i64 first offset and i64 count: offsets
// that hold no kept record (transaction markers, aborted records, records of a topic whose values
// are not kept, records deleted before the keeper read them).

// logEntry is one frame of a record file: a record, or a gap when rec is nil.
type logEntry struct {
	rec           *kgo.Record
	gapFrom, gapN int64
}

func (e logEntry) offset() int64 {
	if e.rec != nil {
		return e.rec.Offset
	}
	return e.gapFrom
}

func (e logEntry) end() int64 {
	if e.rec != nil {
		return e.rec.Offset + 1
	}
	return e.gapFrom + e.gapN
}

func (e logEntry) encode() []byte {
	if e.rec != nil {
		return encodeRecord(e.rec, e.rec.Offset)
	}
	return encodeGap(e.gapFrom, e.gapN)
}

const gapPayload = 16

func encodeGap(from, n int64) []byte {
	b := make([]byte, 8, 8+gapPayload)
	b = binary.LittleEndian.AppendUint64(b, uint64(from))
	b = binary.LittleEndian.AppendUint64(b, uint64(n))
	binary.LittleEndian.PutUint32(b[0:4], gapPayload)
	binary.LittleEndian.PutUint32(b[4:8], crc32.Checksum(b[8:], crc32c))
	return b
}

func encodeRecord(r *kgo.Record, offset int64) []byte {
	b := make([]byte, 8, 8+32+len(r.Key)+len(r.Value))
	b = binary.LittleEndian.AppendUint64(b, uint64(offset))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Timestamp.UnixMilli()))
	b = appendBytes(b, r.Key)
	b = appendBytes(b, r.Value)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Headers)))
	for _, h := range r.Headers {
		b = appendBytes(b, []byte(h.Key))
		b = appendBytes(b, h.Value)
	}
	binary.LittleEndian.PutUint32(b[0:4], uint32(len(b)-8))
	binary.LittleEndian.PutUint32(b[4:8], crc32.Checksum(b[8:], crc32c))
	return b
}

func appendBytes(b, v []byte) []byte {
	if v == nil {
		return binary.LittleEndian.AppendUint32(b, ^uint32(0))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// readLog reads a record file. A torn or corrupt tail (a crash mid-write) ends the file, and so
// does an entry that does not follow the one before it (offsets only grow).
func readLog(path string) ([]logEntry, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []logEntry
	next := int64(0)
	for len(raw) >= 8 {
		n := binary.LittleEndian.Uint32(raw[0:4])
		if uint64(n) > uint64(len(raw)-8) {
			break
		}
		payload := raw[8 : 8+n]
		if crc32.Checksum(payload, crc32c) != binary.LittleEndian.Uint32(raw[4:8]) {
			break
		}
		var e logEntry
		if n == gapPayload {
			e.gapFrom = int64(binary.LittleEndian.Uint64(payload[0:8]))
			e.gapN = int64(binary.LittleEndian.Uint64(payload[8:16]))
			if e.gapN <= 0 || e.gapFrom > math.MaxInt64-e.gapN {
				break
			}
		} else {
			r, ok := decodeRecord(payload)
			if !ok {
				break
			}
			e.rec = r
		}
		if e.offset() < next {
			break
		}
		out = append(out, e)
		next = e.end()
		raw = raw[8+n:]
	}
	return out, nil
}

// readRecords returns the records of a record file, without its gaps.
func readRecords(path string) ([]*kgo.Record, error) {
	ents, err := readLog(path)
	var out []*kgo.Record
	for _, e := range ents {
		if e.rec != nil {
			out = append(out, e.rec)
		}
	}
	return out, err
}

// gapsOnly turns every record of ents into a gap.
func gapsOnly(ents []logEntry) []logEntry {
	out := make([]logEntry, len(ents))
	for i, e := range ents {
		out[i] = logEntry{gapFrom: e.offset(), gapN: e.end() - e.offset()}
	}
	return out
}

// trimExpired drops the longest prefix of ents that holds no record younger than ret (as Kafka's
// retention deletes whole old segments from the start), and returns the rest with the offset it
// starts at and the offset after the last entry.
func trimExpired(ents []logEntry, now time.Time, ret time.Duration) (rest []logEntry, start, end int64) {
	if len(ents) == 0 {
		return nil, 0, 0
	}
	end = ents[len(ents)-1].end()
	for i, e := range ents {
		if e.rec != nil && (ret < 0 || now.Sub(e.rec.Timestamp) <= ret) {
			return ents[i:], e.offset(), end
		}
	}
	return nil, end, end
}

func decodeRecord(p []byte) (*kgo.Record, bool) {
	d := decoder{b: p, ok: true}
	r := &kgo.Record{Offset: int64(d.u64())}
	r.Timestamp = time.UnixMilli(int64(d.u64()))
	r.Key = d.bytes()
	r.Value = d.bytes()
	n := d.u32()
	if uint64(n) > uint64(len(d.b)/8) { // each header takes at least 8 bytes
		return nil, false
	}
	for range n {
		hk := d.bytes()
		if hk == nil && d.ok {
			return nil, false // header keys are strings: encodeRecord never writes a nil one
		}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: string(hk), Value: d.bytes()})
	}
	return r, d.ok && len(d.b) == 0
}

type decoder struct {
	b  []byte
	ok bool
}

func (d *decoder) take(n int) []byte {
	if !d.ok || n > len(d.b) {
		d.ok = false
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) bytes() []byte {
	n := d.u32()
	if n == ^uint32(0) {
		return nil
	}
	v := d.take(int(n))
	if v == nil && d.ok {
		return []byte{}
	}
	return v
}
