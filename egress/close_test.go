package egress_test

import (
	"context"
	"testing"
	"time"

	"github.com/veil-project/veil/egress"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/reveal"
)

// Close stops a running stage (topic delivery and webhook): Run has returned (nil) by the time
// Close does, Close is idempotent, and a Run after it returns at once.
func TestCloseStopsRunningStage(t *testing.T) {
	h := newHarness(t, nil)
	for _, in := range []egress.Integration{
		{Name: "topic", Kind: reveal.KindOther, Ledgers: []string{"event"}, Topic: "out.topic"},
		{Name: "hook", Kind: reveal.KindSupport, Ledgers: []string{"event"}, Delivery: egress.DeliveryWebhook, URL: "https://127.0.0.1:1/veil"},
	} {
		t.Run(in.Name, func(t *testing.T) {
			s, err := egress.New(egress.Config{Brokers: h.addrs, Opener: h.opener, Integration: in,
				Webhook: egress.WebhookConfig{Secret: []byte("0123456789abcdef")}})
			if err != nil {
				t.Fatal(err)
			}
			done := testkit.Start(s)
			time.Sleep(200 * time.Millisecond) // let Run reach its poll (Close before it is the other path)
			testkit.CheckClose(t, s, done, nil)
			if err := s.Run(context.Background()); err != nil {
				t.Errorf("Run after Close = %v, want nil", err)
			}
		})
	}
}
