package authd

import (
	"context"
	"time"

	authv1 "authd.dev/client/gen/auth/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// VerifiedToken is an access token that passed every check of VerifyToken.
// A token answered from the cache is a copy of the cached one whose slices
// and maps are shared: treat them as read-only.
type VerifiedToken struct {
	// Subject is `sub`: the user (e.g. "auth0|alice") or client ("ID@clients").
	Subject string
	// Issuer is `iss`, exactly as in the token.
	Issuer string
	// Audiences is `aud`, always as a list.
	Audiences []string
	// Scopes is the `scope` claim (or `scp`), split.
	Scopes []string
	// Permissions is the `permissions` claim (Auth0 RBAC).
	Permissions []string
	// SessionID is `sid`, the issuer's session id; empty when absent.
	SessionID string
	// TokenID is `jti`; empty when absent.
	TokenID string
	// AuthorizedParty is `azp` (or `client_id`); empty when absent.
	AuthorizedParty string
	// IssuedAt is `iat`; the zero time when absent.
	IssuedAt time.Time
	// ExpiresAt is `exp`.
	ExpiresAt time.Time
	// Binding is what the token is bound to (its cnf claim), which the
	// request proved; nil for a bearer token.
	Binding *TokenBinding
	// Claims holds every other claim of the payload, as JSON values.
	Claims map[string]any
}

// TokenBinding is the confirmation (cnf, RFC 7800) of a sender-constrained
// token.
type TokenBinding struct {
	// JKT is cnf.jkt: the RFC 7638 thumbprint of the DPoP key (RFC 9449).
	JKT string
	// X5TS256 is cnf["x5t#S256"]: the base64url SHA-256 of the client
	// certificate (RFC 8705).
	X5TS256 string
}

// HasScope reports whether the token holds scope in its scopes or its
// permissions.
func (t *VerifiedToken) HasScope(scope string) bool {
	for _, s := range t.Scopes {
		if s == scope {
			return true
		}
	}
	for _, p := range t.Permissions {
		if p == scope {
			return true
		}
	}
	return false
}

func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

func verifiedFromProto(r *authv1.VerifyTokenResponse) *VerifiedToken {
	return &VerifiedToken{
		Subject:         r.GetSubject(),
		Issuer:          r.GetIssuer(),
		Audiences:       r.GetAudiences(),
		Scopes:          r.GetScopes(),
		Permissions:     r.GetPermissions(),
		SessionID:       r.GetSessionId(),
		TokenID:         r.GetTokenId(),
		AuthorizedParty: r.GetAuthorizedParty(),
		IssuedAt:        timeOf(r.GetIssuedAt()),
		ExpiresAt:       timeOf(r.GetExpiresAt()),
		Claims:          r.GetClaims().AsMap(),
		Binding:         bindingFromProto(r.GetBinding()),
	}
}

func bindingFromProto(b *authv1.TokenBinding) *TokenBinding {
	if b.GetJkt() == "" && b.GetX5TS256() == "" {
		return nil
	}
	return &TokenBinding{JKT: b.GetJkt(), X5TS256: b.GetX5TS256()}
}

type tokenKey struct{}

// NewContext returns ctx carrying the verified token, as the middleware in
// httpauth and grpcauth do.
func NewContext(ctx context.Context, token *VerifiedToken) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// FromContext returns the token the middleware verified for this request.
func FromContext(ctx context.Context) (*VerifiedToken, bool) {
	token, ok := ctx.Value(tokenKey{}).(*VerifiedToken)
	return token, ok && token != nil
}

// Session describes a session without its secrets.
type Session struct {
	// ID is a stable, non-secret id for the session (safe to log).
	ID          string
	UserID      string
	Issuer      string
	CreatedAt   time.Time
	RefreshedAt time.Time
	ExpiresAt   time.Time
}

// NewSession is a session just created, with its handle.
type NewSession struct {
	// Handle is the session handle: a secret returned only here. authd keeps
	// only its hash.
	Handle               Secret
	Session              Session
	AccessToken          Secret
	AccessTokenExpiresAt time.Time
	// IDToken is the id token, when the issuer returned one.
	IDToken Secret
	Profile *Profile
}

// Profile is what authd knows of a user.
type Profile struct {
	UserID        string
	Email         string
	EmailVerified bool
	Name          string
	Nickname      string
	Picture       string
	CreatedAt     time.Time
	UpdatedAt     time.Time
	// Attributes holds every other attribute the issuer returned.
	Attributes map[string]any
}

// Refreshed is the answer of RefreshSession.
type Refreshed struct {
	AccessToken Secret
	ExpiresAt   time.Time
	IDToken     Secret
	// RefreshToken is the rotated refresh token, only when the request
	// carried a raw refresh token.
	RefreshToken Secret
	Scopes       []string
}

// DeviceLogin is what StartDeviceLogin answers: show UserCode and
// VerificationURI to the user, then poll (or call [Client.AwaitDeviceLogin]).
type DeviceLogin struct {
	// DeviceCode is the code to poll with; secret to the device.
	DeviceCode              Secret
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string
	// Interval is the wait between polls.
	Interval time.Duration
	// ExpiresIn is how long the device code is good for.
	ExpiresIn time.Duration
}

// DeviceLoginState is where a device login stands.
type DeviceLoginState int

// The states of a device login.
const (
	// DevicePending: the user has not answered yet.
	DevicePending DeviceLoginState = iota + 1
	// DeviceSlowDown: the app polls too often; wait the (longer) interval.
	DeviceSlowDown
	// DeviceDenied: the user refused.
	DeviceDenied
	// DeviceExpired: the device code expired; start again.
	DeviceExpired
	// DeviceApproved: the user approved; the poll holds the session.
	DeviceApproved
)

func (s DeviceLoginState) String() string {
	switch s {
	case DevicePending:
		return "PENDING"
	case DeviceSlowDown:
		return "SLOW_DOWN"
	case DeviceDenied:
		return "DENIED"
	case DeviceExpired:
		return "EXPIRED"
	case DeviceApproved:
		return "APPROVED"
	}
	return "UNSPECIFIED"
}

// DevicePoll is the answer of PollDeviceLogin.
type DevicePoll struct {
	State DeviceLoginState
	// Interval is the wait before the next poll.
	Interval time.Duration
	// Session is the new session when State is DeviceApproved.
	Session *NewSession
}

func sessionFromProto(s *authv1.Session) Session {
	return Session{
		ID:          s.GetSessionId(),
		UserID:      s.GetUserId(),
		Issuer:      s.GetIssuer(),
		CreatedAt:   timeOf(s.GetCreatedAt()),
		RefreshedAt: timeOf(s.GetRefreshedAt()),
		ExpiresAt:   timeOf(s.GetExpiresAt()),
	}
}

func newSessionFromProto(s *authv1.NewSession) *NewSession {
	out := &NewSession{
		Handle:               Secret(s.GetSessionHandle()),
		Session:              sessionFromProto(s.GetSession()),
		AccessToken:          Secret(s.GetAccessToken()),
		AccessTokenExpiresAt: timeOf(s.GetAccessTokenExpiresAt()),
		IDToken:              Secret(s.GetIdToken()),
	}
	if s.GetProfile() != nil {
		out.Profile = profileFromProto(s.GetProfile())
	}
	return out
}

func profileFromProto(p *authv1.Profile) *Profile {
	return &Profile{
		UserID:        p.GetUserId(),
		Email:         p.GetEmail(),
		EmailVerified: p.GetEmailVerified(),
		Name:          p.GetName(),
		Nickname:      p.GetNickname(),
		Picture:       p.GetPicture(),
		CreatedAt:     timeOf(p.GetCreatedAt()),
		UpdatedAt:     timeOf(p.GetUpdatedAt()),
		Attributes:    p.GetAttributes().AsMap(),
	}
}

// Secret holds a token, a refresh token, a session handle or a device code:
// it prints as "[secret]" with fmt and log, so it cannot leak by accident.
// Reveal returns the value.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String hides the value.
func (s Secret) String() string { return "[secret]" }

// GoString hides the value from %#v.
func (s Secret) GoString() string { return `authd.Secret("[secret]")` }

// MarshalText hides the value from encoders (JSON, slog).
func (s Secret) MarshalText() ([]byte, error) { return []byte("[secret]"), nil }
