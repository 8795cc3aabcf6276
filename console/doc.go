// Package console is veil's web console, served by veil itself on the reveal API's listener under
// /console/: a Logs page of the encrypted topics, a thread view, the dead letters, the status of
// the process and the audit trail.
//
// It guarantees:
//   - Sign-in with a principal's API key, exchanged for a server-side session: the cookie holds a
//     random id only (HttpOnly, SameSite=Strict, Secure on TLS); sessions end on sign-out, after
//     IdleTimeout unused and after MaxSession. Every request looks the principal up again, so a
//     principal removed from the principals file is out at once.
//   - Every state change (sign-in, reveal, sign-out) is a POST that carries a CSRF token (the
//     session's, or a double-submit cookie for sign-in) and is refused when the browser marks it
//     cross-site (Sec-Fetch-Site, Origin).
//   - A principal sees the entries of its apps only; another app's entry answers like a missing
//     one. Values are revealed only through the reveal API's own path (reveal.Server.Reveal):
//     the same kind and app rules, one audit record per token, nothing shown if the audit
//     cannot be written. Tokens never reach the browser: a Reveal form names the entry and the
//     field, and the console reads the token from the topic again.
//   - Past the TTL or after erasure a value shows ★★★★★ and why, with no Reveal.
//   - Entry content is untrusted: html/template escapes it; the Content-Security-Policy allows no
//     script at all; every asset is embedded (the console works offline); pages are sent with
//     Cache-Control: no-store; logs never carry a value, a token or an API key.
//   - Reading is read_committed and never scans a topic from its start: a page lists offsets by
//     timestamp and fetches only the offsets it needs, within a bounded budget of records.
package console
