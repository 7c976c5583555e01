package authd

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	authv1 "authd.dev/client/gen/auth/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The package's reasons and the proto's enum must not drift apart.
func TestEveryProtocolReasonIsKnownAndNothingElse(t *testing.T) {
	var fromProto []Reason
	for value := int32(1); ; value++ {
		name, ok := authv1.ErrorReason_name[value]
		if !ok {
			break
		}
		fromProto = append(fromProto, Reason(strings.TrimPrefix(name, "ERROR_REASON_")))
	}
	if len(fromProto) != len(authv1.ErrorReason_name)-1 {
		t.Fatalf("the enum's values are not 1..n: %v", authv1.ErrorReason_name)
	}
	if got := Reasons(); fmt.Sprint(got) != fmt.Sprint(fromProto) {
		t.Fatalf("package reasons %v\nproto reasons   %v\n(run scripts/generate)", got, fromProto)
	}
	if !ReasonSessionRevoked.Known() || Reason("QUOTA_EXCEEDED").Known() {
		t.Fatal("Known")
	}
}

func withInfo(code codes.Code, domain, reason string, md map[string]string) error {
	st, err := status.New(code, "msg").WithDetails(&errdetails.ErrorInfo{Domain: domain, Reason: reason, Metadata: md})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func TestReasonAndMetadataAreDecodedFromErrorInfo(t *testing.T) {
	err := error(fromStatus(withInfo(codes.Unauthenticated, "authd", "TOKEN_EXPIRED", map[string]string{"expired_at": "1"})))
	wrapped := fmt.Errorf("calling authd: %w", err)
	var authErr *AuthError
	if !errors.As(wrapped, &authErr) {
		t.Fatal("errors.As")
	}
	if authErr.Code != codes.Unauthenticated || authErr.Reason != ReasonTokenExpired || authErr.Metadata["expired_at"] != "1" {
		t.Fatalf("%+v", authErr)
	}
	if ReasonOf(wrapped) != ReasonTokenExpired || status.Code(err) != codes.Unauthenticated {
		t.Fatal("ReasonOf / status.Code")
	}
	back := fromStatus(authErr.GRPCStatus().Err())
	if back.Reason != ReasonTokenExpired || back.Metadata["expired_at"] != "1" {
		t.Fatalf("round trip: %+v", back)
	}
}

func TestForeignErrorInfoIsNotTrusted(t *testing.T) {
	if r := fromStatus(withInfo(codes.Unauthenticated, "example.com", "TOKEN_EXPIRED", nil)).Reason; r != "" {
		t.Fatalf("reason %q from another domain", r)
	}
}

func TestAnUnknownReasonIsKeptAsSent(t *testing.T) {
	err := fromStatus(withInfo(codes.ResourceExhausted, "authd", "QUOTA_EXCEEDED", nil))
	if err.Reason != "QUOTA_EXCEEDED" || err.Reason.Known() {
		t.Fatalf("%+v", err)
	}
}

func TestSecretsDoNotPrint(t *testing.T) {
	s := Secret("hunter2")
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v", s, s, s), fmt.Sprintf("%+v", NewSession{Handle: s})} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("printed: %s", out)
		}
	}
	if s.Reveal() != "hunter2" {
		t.Fatal("Reveal")
	}
}

func TestBareAndBearer(t *testing.T) {
	for in, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "dpop abc": "abc", "abc": "abc", "Bearerabc": "Bearerabc"} {
		if got := bare(in); got != want {
			t.Errorf("bare(%q) = %q", in, got)
		}
	}
	for in, want := range map[string]string{"Bearer abc": "abc", "bearer abc": "abc", "DPoP abc": "abc", "Basic abc": "", "Bearer": "", "DPoP  ": "", "": ""} {
		if got, _ := Credential(in); got != want {
			t.Errorf("Credential(%q) = %q", in, got)
		}
	}
}

func TestBackoffDoublesUpToTheCapWithJitterInTheUpperHalf(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 10, InitialBackoff: 100e6, MaxBackoff: 350e6}
	for _, tc := range []struct{ retry, full int }{{1, 100}, {2, 200}, {3, 350}, {8, 350}} {
		for _, r := range []float64{0, 0.999} {
			wait := p.backoff(tc.retry, func() float64 { return r })
			full := float64(tc.full) * 1e6
			if float64(wait) < full/2 || float64(wait) > full {
				t.Errorf("retry %d: %v", tc.retry, wait)
			}
		}
	}
}
