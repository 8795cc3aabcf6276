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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/veil-project/veil/internal/periodic"
)

// keeper keeps the embedded broker's non-raw state in a directory; see Embedded.
type keeper struct {
	cluster  *kfake.Cluster
	dir      string
	interval time.Duration
	log      *slog.Logger
	cl       *kgo.Client
	admCl    *kgo.Client
	adm      *kadm.Client
	// raw seals raw ledger records; nil when raw topics are not kept (no KMS configured).
	raw *rawKeys
	// Transactions (txnlog.go): group offsets committed by open transactions, by producer id;
	// the first offset of each producer's open transaction, by partition (guarded by mu); the
	// sequence number of the last intent and the transaction log (guarded by mu).
	pendMu  sync.Mutex
	pending map[int64]keptOffsets
	open    map[tp]map[int64]int64
	seq     int64
	txlog   *os.File
	// savedSeq is the last intent written before the last saved offsets were read (offMu);
	// txns.log is compacted every compactEvery intents (lastCompact: the seq then; mu).
	savedSeq, lastCompact int64
	compactEvery          int64
	// ttls are the TTLs configured now, by raw topic.
	ttls map[string]time.Duration
	// rawOffs are the raw-topic group offsets found at start when raw is nil, saved unchanged.
	rawOffs keptOffsets

	mu     sync.Mutex // guards files, next, ids, rawRet
	files  map[tp]*keptFile
	rawRet map[string]time.Duration // retention.ms of each raw topic
	next   map[tp]int64             // offset after the last kept record
	ids    map[string]kadm.TopicID

	stop     context.CancelFunc
	pollDone chan struct{}
	syncDone chan struct{}
	offDone  chan struct{}
	kick     chan struct{} // the topic list changed
	offMu    sync.Mutex    // serializes writes of offsets.json
	lastOff  []byte
	lastTop  []byte
}

type tp struct {
	t string
	p int32
}

type keptFile struct {
	f      *os.File
	w      *bufio.Writer
	window int64 // raw files: the RawWindow the file holds
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

func crc32Checksum(b []byte) uint32 { return crc32.Checksum(b, crc32c) }

func startKeeper(ctx context.Context, c *kfake.Cluster, addrs []string, dir string, interval time.Duration, log *slog.Logger, raw *rawKeys, ledgers []LedgerTTL) (*keeper, error) {
	for _, d := range []string{recordsDir, rawRecordsDir} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("creating broker data directory: %w", err)
		}
	}
	k := &keeper{
		cluster: c, dir: dir, interval: interval, log: log, raw: raw,
		files: make(map[tp]*keptFile), next: make(map[tp]int64), ids: make(map[string]kadm.TopicID),
		rawRet: make(map[string]time.Duration), ttls: make(map[string]time.Duration),
		pending: make(map[int64]keptOffsets), open: make(map[tp]map[int64]int64),
		compactEvery: 10_000,
	}
	for _, l := range ledgers {
		k.ttls[RawTopic(l.Name)] = l.TTL
	}
	if err := k.restore(ctx, addrs); err != nil {
		return nil, fmt.Errorf("restoring embedded broker state from %s: %w", dir, err)
	}
	k.observeTxns(c)
	exclude := []string{`^__.*`}
	if raw == nil {
		exclude = append(exclude, `^`+strings.ReplaceAll(RawPrefix, ".", `\.`)+`.*`)
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addrs...),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics(".*"),
		kgo.ConsumeExcludeTopics(exclude...),
		// Uncommitted records and the markers that decide them are kept: see txnlog.go.
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		kgo.KeepControlRecords(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMinAge(100*time.Millisecond),
		kgo.MetadataMaxAge(min(interval, time.Second)),
	)
	if err != nil {
		return nil, fmt.Errorf("creating broker keeper client: %w", err)
	}
	// Admin requests go through a client of their own: the consuming client answers "all topics"
	// metadata requests from what its regex matched, which misses topics created a moment ago.
	admCl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("creating broker keeper client: %w", err)
	}
	k.cl, k.admCl, k.adm = cl, admCl, kadm.NewClient(admCl)
	runCtx, stop := context.WithCancel(context.Background())
	k.stop = stop
	k.pollDone, k.syncDone = make(chan struct{}), make(chan struct{})
	k.offDone = make(chan struct{})
	k.kick = make(chan struct{}, 1)
	// A topic created, deleted or grown is written to topics.json and consumed at once, not at the
	// next SyncInterval: records produced to a new raw topic right away must be kept too.
	for _, key := range []kmsg.Key{kmsg.CreateTopics, kmsg.DeleteTopics, kmsg.CreatePartitions} {
		c.ControlKey(key.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
			select {
			case k.kick <- struct{}{}:
			default:
			}
			return nil, nil, false
		})
	}
	go k.poll(runCtx)
	go k.syncLoop(runCtx)
	go k.offsetLoop(runCtx)
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
		raw := IsRaw(p.Topic)
		if (raw && k.raw == nil) || len(p.Records) == 0 {
			return // raw records reach the disk only sealed
		}
		key := tp{p.Topic, p.Partition}
		keepValues := isKept(p.Topic) || raw
		window := windowOf(time.Now())
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
			switch {
			case r.Attrs.IsControl() && keepValues:
				flushGap()
				buf = append(buf, encodeMarker(r.Offset, r.ProducerID, r.ProducerEpoch, isCommitMarker(r))...)
				delete(k.open[key], r.ProducerID)
			case r.Attrs.IsControl() || !keepValues:
				addGap(r.Offset, 1)
			default:
				rec := escapeTag(r)
				if r.Attrs.IsTransactional() {
					rec = withTxnTag(r)
					if k.open[key] == nil {
						k.open[key] = make(map[int64]int64)
					}
					if _, ok := k.open[key][r.ProducerID]; !ok {
						k.open[key][r.ProducerID] = r.Offset
					}
				}
				flushGap()
				if raw {
					b, err := k.raw.sealRecord(context.Background(), window, rec)
					if err != nil {
						// The KMS is unreachable: the record stays in memory only, as a gap on disk.
						errs = append(errs, fmt.Errorf("sealing raw record %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err))
						addGap(r.Offset, 1)
					} else {
						buf = append(buf, b...)
					}
				} else {
					buf = append(buf, encodeRecord(rec, r.Offset)...)
				}
			}
			next = r.Offset + 1
		}
		flushGap()
		if len(buf) == 0 {
			return
		}
		f, err := k.file(key, window)
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

// file opens (appending) the file of key (for a raw partition, the file of window); k.mu is held.
func (k *keeper) file(key tp, window int64) (*keptFile, error) {
	raw := IsRaw(key.t)
	if f := k.files[key]; f != nil {
		if !raw || f.window == window {
			return f, nil
		}
		err := errors.Join(f.w.Flush(), f.f.Sync(), f.f.Close())
		delete(k.files, key)
		if err != nil {
			return nil, err
		}
	}
	path := k.recordPath(key)
	if raw {
		path = k.rawPath(key, window)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	kf := &keptFile{f: f, w: bufio.NewWriterSize(f, 64<<10), window: window}
	k.files[key] = kf
	return kf, nil
}

func (k *keeper) recordPath(key tp) string {
	return filepath.Join(k.dir, recordsDir, url.PathEscape(key.t)+"-"+strconv.Itoa(int(key.p))+".log")
}

// rawPath names the file of a raw partition's records sealed in window w.
func (k *keeper) rawPath(key tp, w int64) string {
	return filepath.Join(k.dir, rawRecordsDir, url.PathEscape(key.t)+"-"+strconv.Itoa(int(key.p))+"-w"+strconv.FormatInt(w, 10)+".log")
}

// rawFiles returns the raw files of key by window, oldest first.
func (k *keeper) rawFiles(key tp) ([]int64, error) {
	ents, err := os.ReadDir(filepath.Join(k.dir, rawRecordsDir))
	if err != nil {
		return nil, err
	}
	prefix := url.PathEscape(key.t) + "-" + strconv.Itoa(int(key.p)) + "-w"
	var ws []int64
	for _, e := range ents {
		s, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		w, err := strconv.ParseInt(strings.TrimSuffix(s, ".log"), 10, 64)
		if err == nil && strings.HasSuffix(s, ".log") {
			ws = append(ws, w)
		}
	}
	slices.Sort(ws)
	return ws, nil
}

func (k *keeper) syncLoop(ctx context.Context) {
	defer close(k.syncDone)
	t := time.NewTicker(k.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.kick:
			// The control function runs before the broker handles the request: let it finish.
			time.Sleep(20 * time.Millisecond)
			k.cl.ForceMetadataRefresh()
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, k.interval)
		if err := k.sync(sctx); err != nil && ctx.Err() == nil {
			k.log.Warn("saving embedded broker state", "err", err)
		}
		cancel()
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
		if IsRaw(td.Topic) {
			k.mu.Lock()
			k.rawRet[td.Topic] = retentionOf(kt.Configs)
			k.mu.Unlock()
		}
	}
	k.forgetGone(present)
	k.shredRaw(time.Now())
	return k.writeJSON(topicsFile, topics, &k.lastTop)
}

// retentionOf returns a topic's retention.ms (kfake's default when unset; negative: forever).
func retentionOf(cfgs map[string]string) time.Duration {
	if v, ok := cfgs["retention.ms"]; ok {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.Duration(ms) * time.Millisecond
		}
	}
	return kfakeDefRet
}

// shredRaw deletes the raw files whose window ended more than their topic's retention ago, and
// the raw data keys whose window ended more than the longest raw retention ago.
func (k *keeper) shredRaw(now time.Time) {
	if k.raw == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	maxRet := time.Duration(0)
	for t, ret := range k.rawRet {
		if ret < 0 {
			return // a raw topic keeps records forever: so do its keys
		}
		maxRet = max(maxRet, ret)
		ps := k.cluster.PartitionInfos(t)
		for _, pi := range ps {
			key := tp{t, pi.Partition}
			ws, _ := k.rawFiles(key)
			left := len(ws)
			for _, w := range ws {
				if now.Sub(windowEnd(w)) > ret {
					if f := k.files[key]; f != nil && f.window == w {
						f.f.Close()
						delete(k.files, key)
					}
					os.Remove(k.rawPath(key, w))
					left--
				}
			}
			if left == 0 && len(ws) > 0 && k.next[key] > 0 {
				// Keep the partition's end, so that its offsets are not reused after a restart.
				if f, err := k.file(key, windowOf(now)); err == nil {
					f.w.Write(encodeGap(0, k.next[key]))
					f.w.Flush()
				}
			}
		}
	}
	if len(k.rawRet) > 0 {
		k.raw.shred(now, maxRet)
	}
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
			ws, _ := k.rawFiles(key)
			for _, w := range ws {
				os.Remove(k.rawPath(key, w))
			}
			delete(k.rawRet, key.t)
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
			if o.Err != nil || o.At < 0 || (IsRaw(o.Topic) && k.raw == nil) {
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

// offsetLoop saves the group offsets every offsetInterval (see saveOffsets).
func (k *keeper) offsetLoop(ctx context.Context) {
	defer close(k.offDone)
	periodic.Every(ctx, min(k.interval, offsetInterval), func(ctx context.Context) {
		sctx, cancel := context.WithTimeout(ctx, k.interval)
		if err := k.saveOffsets(sctx); err != nil && ctx.Err() == nil {
			k.log.Warn("saving embedded broker group offsets", "err", err)
		}
		cancel()
	})
}

// offsetInterval is how often the group offsets are saved at most.
const offsetInterval = 100 * time.Millisecond

// saveOffsets writes offsets.json so that it never runs ahead of the kept records: the offsets
// are read first, then the last stable offsets, and the file is written only once every kept
// partition reaches them. A transaction whose offsets are in the file thus has its records (and
// markers) in the files too, so a restart never skips input whose output is missing; a crash can
// only lose the offsets of the last moment, whose input is then processed again.
func (k *keeper) saveOffsets(ctx context.Context) error {
	k.offMu.Lock()
	defer k.offMu.Unlock()
	k.mu.Lock()
	seqBefore := k.seq
	k.mu.Unlock()
	offs, err := k.groupOffsets(ctx)
	if err != nil {
		return err
	}
	for g, ts := range k.rawOffs {
		if offs[g] == nil {
			offs[g] = make(map[string]map[int32]int64)
		}
		for t, ps := range ts {
			offs[g][t] = ps
		}
	}
	lso, err := k.adm.ListCommittedOffsets(ctx)
	if err != nil {
		return fmt.Errorf("listing last stable offsets: %w", err)
	}
	for !k.caughtUpTo(lso) {
		t := time.NewTimer(5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for the kept records to reach the offsets: %w", ctx.Err())
		case <-t.C:
		}
	}
	if err := k.writeJSON(offsetsFile, offs, &k.lastOff); err != nil {
		return err
	}
	// Intents written before the previous save committed before this one read the offsets: the
	// file holds them now.
	if err := k.compactTxnLog(k.savedSeq); err != nil {
		k.log.Warn("compacting the transaction log", "err", err)
	}
	k.savedSeq = seqBefore
	return nil
}

// close drains the committed records still in flight (until nothing new arrives for a moment,
// every kept partition is caught up, or ctx is done), writes the state files and closes the files.
func (k *keeper) close(ctx context.Context) error {
	k.stop()
	<-k.pollDone
	<-k.syncDone
	<-k.offDone
	var drained sync.WaitGroup
	dctx, stopDrain := context.WithCancel(ctx)
	drained.Add(1)
	go func() { // keep writing while the offsets are saved: saveOffsets waits for it
		defer drained.Done()
		for dctx.Err() == nil {
			pctx, cancel := context.WithTimeout(dctx, 100*time.Millisecond)
			fs := k.cl.PollFetches(pctx)
			cancel()
			if err := k.write(fs); err != nil {
				k.log.Error("keeping broker records", "err", err)
			}
		}
	}()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := k.sync(sctx)
	err = errors.Join(err, k.saveOffsets(sctx))
	stopDrain()
	drained.Wait()
	k.mu.Lock()
	for key, f := range k.files {
		err = errors.Join(err, f.w.Flush(), f.f.Sync(), f.f.Close())
		delete(k.files, key)
	}
	if k.txlog != nil {
		err = errors.Join(err, k.txlog.Close())
		k.txlog = nil
	}
	k.mu.Unlock()
	k.cl.Close()
	k.admCl.Close()
	return err
}

// caughtUpTo reports whether every kept partition's file reaches its offset in lso.
func (k *keeper) caughtUpTo(lso kadm.ListedOffsets) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	ok := true
	lso.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || strings.HasPrefix(o.Topic, "__") || (IsRaw(o.Topic) && k.raw == nil) {
			return
		}
		if o.Offset > 0 && k.next[tp{o.Topic, o.Partition}] < o.Offset {
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
	intents, err := readIntents(k.dir)
	if err != nil {
		return err
	}
	byPID := make(map[int64][]txnIntent)
	for _, in := range intents {
		byPID[in.PID] = append(byPID[in.PID], in)
		k.seq = max(k.seq, in.Seq)
	}
	markers := make(map[tp][]marker)
	restored := make(map[tp]bool)
	now := time.Now()
	for _, t := range topics {
		if IsRaw(t.Name) && k.raw == nil {
			continue // never kept; EnsureTopics recreates it with the TTL configured now
		}
		if ttl, ok := k.ttls[t.Name]; ok && IsRaw(t.Name) {
			t.Configs = make(map[string]string)
			for key, v := range RawTopicConfigs(ttl) {
				t.Configs[key] = *v
			}
		}
		if err := k.cluster.CreateTopic(t.Name, t.Partitions, t.Configs); err != nil {
			return fmt.Errorf("creating topic %s: %w", t.Name, err)
		}
		ret := retentionOf(t.Configs)
		if IsRaw(t.Name) {
			k.rawRet[t.Name] = ret
		}
		for p := range t.Partitions {
			key := tp{t.Name, p}
			if IsRaw(t.Name) {
				ents, err := k.readRaw(ctx, key, now, ret)
				if err != nil {
					return err
				}
				ents, markers[key] = resolve(key, ents, byPID)
				ents, start, end := trimExpired(ents, now, ret)
				if err := k.restorePartition(ctx, cl, key, ents, start); err != nil {
					return fmt.Errorf("restoring %s/%d: %w", t.Name, p, err)
				}
				restored[key] = true
				k.next[key] = end
				continue
			}
			ents, err := readLog(k.recordPath(key))
			if err != nil {
				return err
			}
			ents, markers[key] = resolve(key, ents, byPID)
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
	if k.raw == nil {
		// Raw offsets kept by a run that had the KMS stay as they are for the next such run.
		for g, ts := range offs {
			for t, ps := range ts {
				if IsRaw(t) {
					if k.rawOffs == nil {
						k.rawOffs = make(keptOffsets)
					}
					if k.rawOffs[g] == nil {
						k.rawOffs[g] = make(map[string]map[int32]int64)
					}
					k.rawOffs[g][t] = ps
				}
			}
		}
	}
	// Transactions whose commit intent was written but whose offsets the snapshot lacks.
	offs = mergeIntents(offs, intents, markers)
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
	// The offsets now hold every committed intent: the snapshot is written before the intents
	// that raw files may still need are compacted.
	if err := k.writeJSON(offsetsFile, offs, &k.lastOff); err != nil {
		return err
	}
	if err := compactIntents(k.dir, intents); err != nil {
		return fmt.Errorf("compacting %s: %w", txnLogFile, err)
	}
	k.log.Info("restored embedded broker state", "topics", len(topics), "groups", len(offs), "intents", len(intents))
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
	// A transactional record (rec set) or a transaction marker (gapFrom its offset, gapN 1),
	// until resolve turns them into records and gaps.
	txn, marker, commit bool
	pid                 int64
	epoch               int16
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
	if e.marker {
		return encodeMarker(e.gapFrom, e.pid, e.epoch, e.commit)
	}
	if e.rec != nil {
		if e.txn {
			r := *escapeTag(e.rec)
			r.ProducerID, r.ProducerEpoch = e.pid, e.epoch
			return encodeRecord(withTxnTag(&r), r.Offset)
		}
		return encodeRecord(escapeTag(e.rec), e.rec.Offset)
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
	return readFrames(path, 0, func(payload []byte) (*kgo.Record, bool, error) {
		r, ok := decodeRecord(payload)
		return r, ok, nil
	})
}

// readRaw reads the raw files of key, oldest window first, deleting those past retention. A
// record whose data key is deleted reads as a gap; a record that does not open (tampered, or the
// KMS refuses) is an error: nothing is restored from a directory that is not what veil wrote.
func (k *keeper) readRaw(ctx context.Context, key tp, now time.Time, ret time.Duration) ([]logEntry, error) {
	ws, err := k.rawFiles(key)
	if err != nil {
		return nil, err
	}
	var out []logEntry
	next := int64(0)
	for _, w := range ws {
		path := k.rawPath(key, w)
		if ret >= 0 && now.Sub(windowEnd(w)) > ret {
			os.Remove(path)
			continue
		}
		ents, err := readFrames(path, next, func(payload []byte) (*kgo.Record, bool, error) {
			r, err := k.raw.openRecord(ctx, key.t, key.p, payload)
			if errors.Is(err, errRawKeyGone) {
				return nil, true, nil
			}
			return r, err == nil, err
		})
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", filepath.Base(path), err)
		}
		if len(ents) > 0 {
			next = ents[len(ents)-1].end()
		}
		out = append(out, ents...)
	}
	return out, nil
}

// readFrames reads the frames of path whose offsets start at or after from; decode turns a
// record payload into a record (nil: a record that is gone, read as a gap of one, which needs its
// offset in the payload's first 8 bytes), false for a corrupt payload, or an error.
func readFrames(path string, from int64, decode func([]byte) (*kgo.Record, bool, error)) ([]logEntry, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []logEntry
	next := from
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
		if n == markerPayload {
			e.gapFrom, e.gapN, e.marker = int64(binary.LittleEndian.Uint64(payload[0:8])), 1, true
			e.pid = int64(binary.LittleEndian.Uint64(payload[8:16]))
			e.epoch = int16(binary.LittleEndian.Uint16(payload[16:18]))
			e.commit = payload[18] == 1
		} else if n == gapPayload {
			e.gapFrom = int64(binary.LittleEndian.Uint64(payload[0:8]))
			e.gapN = int64(binary.LittleEndian.Uint64(payload[8:16]))
			if e.gapN <= 0 || e.gapFrom > math.MaxInt64-e.gapN {
				break
			}
		} else {
			r, ok, err := decode(payload)
			if err != nil {
				return nil, err
			}
			if !ok || len(payload) < 8 {
				break
			}
			if r == nil {
				e.gapFrom, e.gapN = int64(binary.LittleEndian.Uint64(payload[0:8])), 1
			}
			e.rec = r
			e.untag()
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
