package main

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/schemas"
)

// Redacted is what the redacted view holds in place of a sensitive value (envelope.Redacted).
const Redacted = "★★★★★"

// sealedPrefix starts every value the Benthos mapping encrypted: "enc:<nonce>:<base64 ciphertext>".
const sealedPrefix = "enc:"

// mappings returns the two Bloblang mappings a Benthos user would write to do what veil's
// transform does to an entry under the default app settings (transcript and transport on): the
// encrypted view (each sensitive value replaced by its AES-256-GCM ciphertext under a fresh 12-byte
// nonce) and the redacted view (each sensitive value replaced by ★★★★★). The type rows and the
// ledger rules are generated from veil's own tables (schemas.DefaultRows, ledgers.All); the rule of
// ledgers.Decide (DESIGN §3) is written out in Bloblang. Every registry field is a top-level key
// of data, which is what lets one map_each over data apply them.
func mappings(key []byte) (encrypted, redacted string, err error) {
	var b strings.Builder
	b.WriteString("let info = match this.type.or(\"\") {\n")
	for _, row := range schemas.DefaultRows() {
		var keys []string
		for _, f := range row.Fields {
			k, ok := strings.CutPrefix(f, "data.")
			if !ok || strings.Contains(k, ".") {
				return "", "", fmt.Errorf("registry field %s of %s is not a top-level key of data", f, row.Type)
			}
			keys = append(keys, fmt.Sprintf("%q", k))
		}
		fmt.Fprintf(&b, "  %q => {\"c\": %q, \"f\": [%s]},\n", row.Type, category(row.Category), strings.Join(keys, ", "))
	}
	b.WriteString("  _ => {\"c\": \"unknown\", \"f\": []},\n}\n")
	b.WriteString("let rule = match this.ledger.or(\"\") {\n")
	for _, l := range ledgers.All() {
		fmt.Fprintf(&b, "  %q => %q,\n", l.Name, l.Rule.String())
	}
	b.WriteString("  _ => \"unknown\",\n}\n")
	// An unknown type or ledger seals every top-level key of data (ledgers.Decide: Paths "data").
	b.WriteString(`let all = $info.c == "unknown" || $rule == "unknown"
let flagged = match {
  $all => true,
  $rule == "transport" || $info.c == "transport" => true,
  $rule == "media" || $info.c == "media" => true,
  $info.c == "ordinary" => ["agent", "system"].contains(this.user.type.or("")) || this.thread.mode.or("") != "bot",
  $info.c == "component" => this.component.sensitive.or(true),
  $info.c == "trigger" => this.trigger.sensitive.or(false),
  _ => true,
} || this.sensitive.or(false) == true
root = this
`)
	common := b.String()
	enc := common + fmt.Sprintf(`let key = %q.decode("hex")
if $flagged {
  root.sensitive = true
  root.data = this.data.map_each(kv -> if ($all || $info.f.contains(kv.key)) && !(kv.value.type() == "string" && kv.value.has_prefix("veil:v1:")) {
    nanoid(12).(nonce -> %q + nonce + ":" + kv.value.format_json(no_indent: true).encrypt_aes("gcm", $key, nonce).encode("base64"))
  } else { kv.value })
}
`, hex.EncodeToString(key), sealedPrefix)
	red := common + fmt.Sprintf(`if $flagged {
  root.sensitive = true
  root.data = this.data.map_each(kv -> if $all || $info.f.contains(kv.key) { %q } else { kv.value })
}
`, Redacted)
	return enc, red, nil
}

// category is the peers' short name of c; Category.String spells DESIGN's "component response"
// and "trigger response".
func category(c schemas.Category) string {
	switch c {
	case schemas.CategoryOrdinary:
		return "ordinary"
	case schemas.CategoryMedia:
		return "media"
	case schemas.CategoryComponent:
		return "component"
	case schemas.CategoryTrigger:
		return "trigger"
	case schemas.CategoryTransport:
		return "transport"
	}
	return "unknown"
}
