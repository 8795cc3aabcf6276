package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veil-project/veil/internal/testkit"
)

// journal records what the actors of a test group did, in order.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(e string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.events)
}

// until is an actor that runs until its ctx ends, then takes a moment to stop (so a group that
// does not wait for it returns first) and records its return.
func until(j *journal, name string) func(context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond)
		j.add(name)
		return nil
	}
}

func testGroup(*testing.T) (*group, *testkit.Buffer) {
	var logs testkit.Buffer
	return newGroup(newLogger(&logs, "info")), &logs
}

// TestGroupActorFailureStopsAll: an actor that fails stops every other one, in stage order
// (input, output, edge, housekeeping), each waited for before Run returns; its error, named, is
// the group's, and it is logged.
func TestGroupActorFailureStopsAll(t *testing.T) {
	g, logs := testGroup(t)
	var j journal
	boom := errors.New("bucket gone")
	g.add(stageHousekeeping, "janitor", until(&j, "janitor"))
	g.add(stageEdge, "api", until(&j, "api"))
	g.add(stageInput, "processor", until(&j, "processor"))
	g.add(stageOutput, "egress", until(&j, "egress"))
	g.add(stageOutput, "analytics sink", func(ctx context.Context) error {
		select {
		case <-time.After(10 * time.Millisecond):
			return boom
		case <-ctx.Done():
			return nil
		}
	})
	err := g.run(context.Background())
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "analytics sink") {
		t.Errorf("run = %v, want the sink's error, named", err)
	}
	if got, want := j.list(), []string{"processor", "egress", "api", "janitor"}; !slices.Equal(got, want) {
		t.Errorf("actors returned in order %q, want %q (all of them, before run returned)", got, want)
	}
	if !strings.Contains(logs.String(), "bucket gone") || !strings.Contains(logs.String(), `"component":"analytics sink"`) {
		t.Errorf("log does not name the failed component and its cause:\n%s", logs)
	}
}

// TestGroupEarlyReturnIsFailure: an actor returning nil before it was asked to stop is a failure
// (errStoppedEarly); the others are stopped.
func TestGroupEarlyReturnIsFailure(t *testing.T) {
	g, _ := testGroup(t)
	var j journal
	g.add(stageInput, "processor", func(context.Context) error { return nil })
	g.add(stageHousekeeping, "janitor", until(&j, "janitor"))
	err := g.run(context.Background())
	if !errors.Is(err, errStoppedEarly) || !strings.Contains(err.Error(), "processor") {
		t.Errorf("run = %v, want processor: %v", err, errStoppedEarly)
	}
	if got := j.list(); !slices.Equal(got, []string{"janitor"}) {
		t.Errorf("returned: %q, want janitor", got)
	}
}

// TestGroupCancelIsClean: a cancelled ctx (SIGTERM) stops every actor and run returns nil;
// actors returning context.Canceled once stopped are not failures, but an error an actor returns
// while stopping (an analytics flush that cannot finish) is the group's.
func TestGroupCancelIsClean(t *testing.T) {
	for _, tt := range []struct {
		name    string
		atClose error
		want    error
	}{
		{"nil", nil, nil},
		{"canceled", context.Canceled, nil},
		{"flush failed", errors.New("flushing at shutdown"), errors.New("sink: flushing at shutdown")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := testGroup(t)
			var j journal
			g.add(stageInput, "processor", until(&j, "processor"))
			g.add(stageOutput, "sink", func(ctx context.Context) error { <-ctx.Done(); return tt.atClose })
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(10*time.Millisecond, cancel)
			err := g.run(ctx)
			if (err == nil) != (tt.want == nil) || err != nil && err.Error() != tt.want.Error() {
				t.Errorf("run = %v, want %v", err, tt.want)
			}
			if got := j.list(); !slices.Equal(got, []string{"processor"}) {
				t.Errorf("returned: %q, want processor", got)
			}
		})
	}
}

// TestGroupShutdownTimeout: an actor that ignores its ctx does not hold the process: run returns
// after the timeout with an error naming it.
func TestGroupShutdownTimeout(t *testing.T) {
	g, _ := testGroup(t)
	g.timeout = 100 * time.Millisecond
	release := make(chan struct{})
	defer close(release)
	g.add(stageOutput, "stuck sink", func(context.Context) error { <-release; return nil })
	g.add(stageInput, "processor", func(context.Context) error { return errors.New("fenced") })
	err := g.run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "fenced") || !strings.Contains(err.Error(), "still running: stuck sink") {
		t.Errorf("run = %v, want the processor's error and the stuck sink named", err)
	}
}
