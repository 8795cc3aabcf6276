// Package kmsfake is a FAKE AWS KMS for tests: an http.Handler speaking the KMS JSON 1.1 protocol
// for GenerateDataKey, Decrypt and Encrypt. It is not a KMS and protects nothing.
//
// Like real KMS, it resolves every key name it is given (key id, key ARN, alias name) to the key's
// ARN and answers with that ARN as KeyId, never echoing the alias it was called with; configured
// names that are not ARNs get the ARN arn:aws:kms:eu-west-1:111122223333:key/<UUID derived from
// the name>. Tests that need real KMS behaviour beyond this run against local-kms
// (internal/testsvc.StartLocalKMS); this fake remains for what local-kms cannot do: outages
// (SetDown), call counts (Calls) and SigV4 checks.
//
// What it does check, like KMS: every request must carry a SigV4 Authorization header for
// service "kms" (verified when the fake has credentials), key ids must be known (else
// NotFoundException), and ciphertexts are bound to their key id and encryption context (else
// InvalidCiphertextException). SetDown makes every call fail with 503 KMSInternalException, and
// Calls counts requests per operation.
package kmsfake

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/veil-project/veil/crypto/kmslocal"
)

// Operation names, as in X-Amz-Target: TrentService.<op>.
const (
	OpGenerateDataKey = "GenerateDataKey"
	OpDecrypt         = "Decrypt"
	OpEncrypt         = "Encrypt"
)

const (
	contentType = "application/x-amz-json-1.1"
	maxBody     = 1 << 20
	maxSkew     = 15 * time.Minute
)

// Config configures a Server.
type Config struct {
	KeyIDs []string // known key ids; others get NotFoundException

	// When AccessKeyID is set, signatures are verified against these credentials; otherwise any
	// well-formed SigV4 Authorization header is accepted.
	AccessKeyID     string
	SecretAccessKey string
}

// Server is the fake KMS. Serve it with httptest.NewServer.
type Server struct {
	cfg  Config
	kms  *kmslocal.Provider
	mu   sync.Mutex
	keys map[string]string // every accepted name → the key's ARN
	down bool
	hits map[string]int
}

// New returns a fake KMS with a fresh random root key.
func New(cfg Config) *Server {
	root := make([]byte, kmslocal.RootKeySize)
	if _, err := rand.Read(root); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	p, err := kmslocal.New(root)
	if err != nil {
		panic(err)
	}
	clear(root)
	s := &Server{cfg: cfg, kms: p, keys: map[string]string{}, hits: map[string]int{}}
	for _, id := range cfg.KeyIDs {
		arn := id
		if !strings.HasPrefix(id, "arn:") {
			arn = ARN(id)
		}
		s.keys[id], s.keys[arn] = arn, arn
	}
	return s
}

// ARN returns the ARN the fake gives a configured key name that is not an ARN.
func ARN(name string) string {
	h := sha256.Sum256([]byte(name))
	x := hex.EncodeToString(h[:16])
	return "arn:aws:kms:eu-west-1:111122223333:key/" + x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// SetDown makes every later call fail with 503 KMSInternalException (true) or work again (false).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Calls returns how many signed requests for op reached the fake, failed ones included.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[op]
}

// resolve returns the ARN of the key called id, if known.
func (s *Server) resolve(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	arn, ok := s.keys[id]
	return arn, ok
}

func (s *Server) known(id string) bool {
	_, ok := s.resolve(id)
	return ok
}

type apiErr struct {
	status int
	code   string
	msg    string
}

func writeErr(w http.ResponseWriter, e apiErr) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-Errortype", e.code)
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": e.code, "message": e.msg})
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Amzn-Requestid", strconv.FormatInt(time.Now().UnixNano(), 36))
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		writeErr(w, apiErr{http.StatusNotFound, "UnknownOperationException", "POST / only"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		writeErr(w, apiErr{http.StatusBadRequest, "SerializationException", "unreadable or oversized body"})
		return
	}
	if e, ok := s.checkSignature(r, body); !ok {
		writeErr(w, e)
		return
	}
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
	if !ok || !slices.Contains([]string{OpGenerateDataKey, OpDecrypt, OpEncrypt}, op) {
		writeErr(w, apiErr{http.StatusBadRequest, "UnknownOperationException", "unsupported X-Amz-Target"})
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != contentType {
		writeErr(w, apiErr{http.StatusBadRequest, "SerializationException", "Content-Type must be " + contentType})
		return
	}
	s.mu.Lock()
	s.hits[op]++
	down := s.down
	s.mu.Unlock()
	if down {
		writeErr(w, apiErr{http.StatusServiceUnavailable, "KMSInternalException", "the fake KMS is down"})
		return
	}
	var out any
	switch op {
	case OpGenerateDataKey:
		out, err = s.generateDataKey(r, body)
	case OpDecrypt:
		out, err = s.decrypt(r, body)
	case OpEncrypt:
		out, err = s.encrypt(r, body)
	}
	if err != nil {
		var e apiErr
		var api smithy.APIError
		switch {
		case errors.As(err, &e):
		case errors.As(err, &api):
			e = apiErr{http.StatusBadRequest, api.ErrorCode(), api.ErrorMessage()}
		default:
			e = apiErr{http.StatusInternalServerError, "KMSInternalException", "internal error"}
		}
		writeErr(w, e)
		return
	}
	w.Header().Set("Content-Type", contentType)
	_ = json.NewEncoder(w).Encode(out)
}

func (e apiErr) Error() string { return e.code + ": " + e.msg }

func notFound(id string) error {
	return apiErr{http.StatusBadRequest, "NotFoundException", "Key '" + id + "' does not exist"}
}

func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return apiErr{http.StatusBadRequest, "SerializationException", "malformed request body"}
	}
	return nil
}

type generateReq struct {
	KeyId             string
	KeySpec           types.DataKeySpec
	NumberOfBytes     *int32
	EncryptionContext map[string]string
}

type generateResp struct {
	CiphertextBlob []byte
	Plaintext      []byte
	KeyId          string
}

func (s *Server) generateDataKey(r *http.Request, body []byte) (any, error) {
	var in generateReq
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	arn, ok := s.resolve(in.KeyId)
	if !ok {
		return nil, notFound(in.KeyId)
	}
	out, err := s.kms.GenerateDataKey(r.Context(), &kms.GenerateDataKeyInput{
		KeyId: aws.String(arn), KeySpec: in.KeySpec, NumberOfBytes: in.NumberOfBytes, EncryptionContext: in.EncryptionContext,
	})
	if err != nil {
		return nil, err
	}
	return generateResp{CiphertextBlob: out.CiphertextBlob, Plaintext: out.Plaintext, KeyId: arn}, nil
}

type decryptReq struct {
	CiphertextBlob      []byte
	KeyId               *string
	EncryptionContext   map[string]string
	EncryptionAlgorithm types.EncryptionAlgorithmSpec
}

type decryptResp struct {
	Plaintext           []byte
	KeyId               string
	EncryptionAlgorithm types.EncryptionAlgorithmSpec
}

func (s *Server) decrypt(r *http.Request, body []byte) (any, error) {
	var in decryptReq
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.KeyId != nil {
		arn, ok := s.resolve(*in.KeyId)
		if !ok {
			return nil, notFound(*in.KeyId)
		}
		in.KeyId = &arn
	}
	if id, err := kmslocal.KeyIDOf(in.CiphertextBlob); err == nil && !s.known(id) {
		return nil, notFound(id)
	}
	out, err := s.kms.Decrypt(r.Context(), &kms.DecryptInput{
		CiphertextBlob: in.CiphertextBlob, KeyId: in.KeyId, EncryptionContext: in.EncryptionContext, EncryptionAlgorithm: in.EncryptionAlgorithm,
	})
	if err != nil {
		return nil, err
	}
	return decryptResp{Plaintext: out.Plaintext, KeyId: aws.ToString(out.KeyId), EncryptionAlgorithm: out.EncryptionAlgorithm}, nil
}

type encryptReq struct {
	KeyId               string
	Plaintext           []byte
	EncryptionContext   map[string]string
	EncryptionAlgorithm types.EncryptionAlgorithmSpec
}

type encryptResp struct {
	CiphertextBlob      []byte
	KeyId               string
	EncryptionAlgorithm types.EncryptionAlgorithmSpec
}

func (s *Server) encrypt(r *http.Request, body []byte) (any, error) {
	var in encryptReq
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	arn, ok := s.resolve(in.KeyId)
	if !ok {
		return nil, notFound(in.KeyId)
	}
	out, err := s.kms.Encrypt(r.Context(), &kms.EncryptInput{
		KeyId: aws.String(arn), Plaintext: in.Plaintext, EncryptionContext: in.EncryptionContext, EncryptionAlgorithm: in.EncryptionAlgorithm,
	})
	if err != nil {
		return nil, err
	}
	return encryptResp{CiphertextBlob: out.CiphertextBlob, KeyId: arn, EncryptionAlgorithm: out.EncryptionAlgorithm}, nil
}

// checkSignature requires an AWS4-HMAC-SHA256 Authorization header for service kms and, when the
// fake has credentials, recomputes the signature over the headers the client signed.
func (s *Server) checkSignature(r *http.Request, body []byte) (apiErr, bool) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return apiErr{http.StatusBadRequest, "MissingAuthenticationTokenException", "missing Authorization header"}, false
	}
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return apiErr{http.StatusBadRequest, "IncompleteSignatureException", "not a SigV4 Authorization header"}, false
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	cred := strings.Split(fields["Credential"], "/")
	signed := fields["SignedHeaders"]
	sig := fields["Signature"]
	amzDate := r.Header.Get("X-Amz-Date")
	if len(cred) != 5 || cred[3] != "kms" || cred[4] != "aws4_request" || signed == "" || sig == "" || amzDate == "" {
		return apiErr{http.StatusBadRequest, "IncompleteSignatureException", "malformed SigV4 Authorization header"}, false
	}
	if s.cfg.AccessKeyID == "" {
		return apiErr{}, true
	}
	if cred[0] != s.cfg.AccessKeyID {
		return apiErr{http.StatusBadRequest, "UnrecognizedClientException", "unknown access key id"}, false
	}
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil || !strings.HasPrefix(amzDate, cred[1]) || time.Since(t).Abs() > maxSkew {
		return apiErr{http.StatusBadRequest, "InvalidSignatureException", "bad or stale X-Amz-Date"}, false
	}
	names := strings.Split(signed, ";")
	if !slices.Contains(names, "host") || !slices.Contains(names, "x-amz-date") {
		return apiErr{http.StatusBadRequest, "InvalidSignatureException", "host and x-amz-date must be signed"}, false
	}
	var canon strings.Builder
	canon.WriteString(r.Method + "\n/\n" + r.URL.RawQuery + "\n")
	for _, n := range names {
		var v string
		switch n {
		case "host":
			v = r.Host
		case "content-length":
			v = strconv.FormatInt(r.ContentLength, 10)
		default:
			vals := r.Header.Values(n)
			for i := range vals {
				vals[i] = strings.Join(strings.Fields(vals[i]), " ")
			}
			v = strings.Join(vals, ",")
		}
		canon.WriteString(n + ":" + v + "\n")
	}
	bodyHash := sha256.Sum256(body)
	canon.WriteString("\n" + signed + "\n" + hex.EncodeToString(bodyHash[:]))
	canonHash := sha256.Sum256([]byte(canon.String()))
	scope := strings.Join(cred[1:], "/")
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(canonHash[:])
	key := []byte("AWS4" + s.cfg.SecretAccessKey)
	for _, part := range cred[1:] {
		key = hmacSHA256(key, part)
	}
	want := hex.EncodeToString(hmacSHA256(key, toSign))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return apiErr{http.StatusBadRequest, "InvalidSignatureException", "signature does not match"}, false
	}
	return apiErr{}, true
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}
