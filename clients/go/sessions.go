package authd

import (
	"context"

	authv1 "authd.dev/client/gen/auth/v1"
	"google.golang.org/grpc/codes"
)

// SessionGrant is how CreateSession's caller proves the user signed in:
// an [AuthorizationCode] or [ExistingTokens].
type SessionGrant interface {
	apply(*authv1.CreateSessionRequest)
}

// AuthorizationCode is the result of a browser sign-in, exchanged by authd.
type AuthorizationCode struct {
	Code         Secret
	RedirectURI  string
	CodeVerifier Secret // PKCE (RFC 7636), when used
	Nonce        string // the authorization request's nonce, when used
}

func (g AuthorizationCode) apply(r *authv1.CreateSessionRequest) {
	r.Grant = &authv1.CreateSessionRequest_AuthorizationCode{AuthorizationCode: &authv1.AuthorizationCodeGrant{
		Code: g.Code.Reveal(), RedirectUri: g.RedirectURI, CodeVerifier: g.CodeVerifier.Reveal(), Nonce: g.Nonce,
	}}
}

// ExistingTokens hands authd tokens the caller obtained itself.
type ExistingTokens struct {
	RefreshToken Secret
	IDToken      Secret
	AccessToken  Secret // optional
	Nonce        string // optional
}

func (g ExistingTokens) apply(r *authv1.CreateSessionRequest) {
	r.Grant = &authv1.CreateSessionRequest_ExistingTokens{ExistingTokens: &authv1.ExistingTokens{
		RefreshToken: g.RefreshToken.Reveal(), IdToken: g.IDToken.Reveal(), AccessToken: g.AccessToken.Reveal(), Nonce: g.Nonce,
	}}
}

// CreateSession starts a session (never retried). issuer may be empty when
// authd has one issuer.
func (c *Client) CreateSession(ctx context.Context, grant SessionGrant, issuer string) (*NewSession, error) {
	req := &authv1.CreateSessionRequest{Issuer: issuer}
	grant.apply(req)
	res, err := unary(ctx, c, false, "", req, c.rpc.CreateSession)
	if err != nil {
		return nil, err
	}
	if res.GetSession() == nil {
		return nil, localError(codes.Internal, "authd sent no session")
	}
	return newSessionFromProto(res.GetSession()), nil
}

// RefreshSession returns a fresh access token for a session handle (never
// retried).
func (c *Client) RefreshSession(ctx context.Context, handle Secret) (*Refreshed, error) {
	return c.refresh(ctx, &authv1.RefreshSessionRequest{
		Credential: &authv1.RefreshSessionRequest_SessionHandle{SessionHandle: handle.Reveal()},
	})
}

// RefreshToken forwards a raw refresh token to the issuer and returns the
// rotated one with the new access token (never retried: the issuer may have
// rotated it already).
func (c *Client) RefreshToken(ctx context.Context, refreshToken Secret, issuer string) (*Refreshed, error) {
	return c.refresh(ctx, &authv1.RefreshSessionRequest{
		Credential: &authv1.RefreshSessionRequest_RefreshToken{RefreshToken: refreshToken.Reveal()},
		Issuer:     issuer,
	})
}

func (c *Client) refresh(ctx context.Context, req *authv1.RefreshSessionRequest) (*Refreshed, error) {
	res, err := unary(ctx, c, false, "", req, c.rpc.RefreshSession)
	if err != nil {
		return nil, err
	}
	return &Refreshed{
		AccessToken:  Secret(res.GetAccessToken()),
		ExpiresAt:    timeOf(res.GetExpiresAt()),
		IDToken:      Secret(res.GetIdToken()),
		RefreshToken: Secret(res.GetRefreshToken()),
		Scopes:       res.GetScopes(),
	}, nil
}

// RevokeSession ends one session; answers how many were revoked.
func (c *Client) RevokeSession(ctx context.Context, handle Secret) (uint32, error) {
	res, err := unary(ctx, c, true, "", &authv1.RevokeSessionRequest{
		Target: &authv1.RevokeSessionRequest_SessionHandle{SessionHandle: handle.Reveal()},
	}, c.rpc.RevokeSession)
	return res.GetRevokedSessions(), err
}

// RevokeUserSessions ends every session of userID, for a trusted service
// proven by its certificate or by serviceToken (sent as authorization:
// Bearer; empty: none).
func (c *Client) RevokeUserSessions(ctx context.Context, userID string, serviceToken Secret) (uint32, error) {
	res, err := unary(ctx, c, true, serviceToken.Reveal(), &authv1.RevokeSessionRequest{
		Target: &authv1.RevokeSessionRequest_UserId{UserId: userID},
	}, c.rpc.RevokeSession)
	return res.GetRevokedSessions(), err
}

// GetProfile returns the profile of the user accessToken belongs to.
func (c *Client) GetProfile(ctx context.Context, accessToken string) (*Profile, error) {
	return c.profile(ctx, "", &authv1.GetProfileRequest{
		Subject: &authv1.GetProfileRequest_AccessToken{AccessToken: accessToken},
	})
}

// GetProfileByID returns any user's profile, for a trusted service proven
// by its certificate or by serviceToken (empty: none).
func (c *Client) GetProfileByID(ctx context.Context, userID string, serviceToken Secret) (*Profile, error) {
	return c.profile(ctx, serviceToken.Reveal(), &authv1.GetProfileRequest{
		Subject: &authv1.GetProfileRequest_UserId{UserId: userID},
	})
}

func (c *Client) profile(ctx context.Context, authz string, req *authv1.GetProfileRequest) (*Profile, error) {
	res, err := unary(ctx, c, true, authz, req, c.rpc.GetProfile)
	if err != nil {
		return nil, err
	}
	if res.GetProfile() == nil {
		return nil, localError(codes.Internal, "authd sent no profile")
	}
	return profileFromProto(res.GetProfile()), nil
}
