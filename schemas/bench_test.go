package schemas

import "testing"

// benchEntry is a realistic ~1 KiB agent-mode say event.
const benchEntry = `{"id":"e-01JD5Q2ZK3M4N5P6Q7R8S9T0VW","app_id":"app-42","ledger":"event","type":"meya.text.event.say",` +
	`"ts":"2026-11-22T10:00:00.123456Z","thread":{"id":"t-01JD5Q2ZK3M4N5P6Q7R8S9T0VX","mode":"agent"},` +
	`"user":{"id":"u-01JD5Q2ZK3M4N5P6Q7R8S9T0VY","type":"user"},"sensitive_paths":["data.context.email"],` +
	`"data":{"text":"Hi, I ordered a blue jacket last week (order #88412) and it still has not arrived. My email is jane.doe@example.com and my phone is +1 555 0100. Could you check the shipping status and let me know when I can expect it? Thanks a lot!",` +
	`"quick_replies":[{"text":"Track order","data":{"action":"track"}},{"text":"Talk to agent","data":{"action":"agent"}}],` +
	`"context":{"email":"jane.doe@example.com","locale":"en-US","channel":"web","page":"https://shop.example.com/orders/88412","attempt":2,"vip":false},` +
	`"markdown":["format","linkify"],"composer":{"focus":"text","placeholder":"Type a message","visibility":"collapse"},"meta":{"ip_country":"CA","ua":"Mozilla/5.0 (X11; Linux x86_64)"}}}`

func BenchmarkDecode(b *testing.B) {
	in := []byte(benchEntry)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(in, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	e, err := Decode([]byte(benchEntry), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = e.AppendEncode(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
