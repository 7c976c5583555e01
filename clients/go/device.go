package authd

import (
	"context"
	"time"

	authv1 "authd.dev/client/gen/auth/v1"
	"google.golang.org/grpc/codes"
)

// DeviceLoginRequest asks for a device login.
type DeviceLoginRequest struct {
	// Scopes to ask for; openid and offline_access are added by authd.
	Scopes []string
	// Audience is the API audience; defaults to the issuer's first one.
	Audience string
	// Issuer is the configured issuer; may be empty with one issuer.
	Issuer string
}

// StartDeviceLogin begins a device login (RFC 8628; never retried).
func (c *Client) StartDeviceLogin(ctx context.Context, req DeviceLoginRequest) (*DeviceLogin, error) {
	res, err := unary(ctx, c, false, "", &authv1.StartDeviceLoginRequest{
		Scopes: req.Scopes, Audience: req.Audience, Issuer: req.Issuer,
	}, c.rpc.StartDeviceLogin)
	if err != nil {
		return nil, err
	}
	return &DeviceLogin{
		DeviceCode:              Secret(res.GetDeviceCode()),
		UserCode:                res.GetUserCode(),
		VerificationURI:         res.GetVerificationUri(),
		VerificationURIComplete: res.GetVerificationUriComplete(),
		Interval:                time.Duration(res.GetInterval()) * time.Second,
		ExpiresIn:               time.Duration(res.GetExpiresIn()) * time.Second,
	}, nil
}

// PollDeviceLogin reports where a device login stands, with the session once
// approved. interval is the one the app polls at now: the DeviceLogin's at
// first, then the last DevicePoll's, so that a slow down's longer interval
// sticks (RFC 8628 §3.5; authd keeps no state between polls).
func (c *Client) PollDeviceLogin(ctx context.Context, deviceCode Secret, interval time.Duration, issuer string) (*DevicePoll, error) {
	secs := uint32(min(max(interval/time.Second, 0), 3600))
	res, err := unary(ctx, c, true, "", &authv1.PollDeviceLoginRequest{
		DeviceCode: deviceCode.Reveal(), Issuer: issuer, Interval: secs,
	}, c.rpc.PollDeviceLogin)
	if err != nil {
		return nil, err
	}
	poll := &DevicePoll{Interval: time.Duration(res.GetInterval()) * time.Second}
	switch res.GetState() {
	case authv1.DeviceLoginState_DEVICE_LOGIN_STATE_PENDING:
		poll.State = DevicePending
	case authv1.DeviceLoginState_DEVICE_LOGIN_STATE_SLOW_DOWN:
		poll.State = DeviceSlowDown
	case authv1.DeviceLoginState_DEVICE_LOGIN_STATE_DENIED:
		poll.State = DeviceDenied
	case authv1.DeviceLoginState_DEVICE_LOGIN_STATE_EXPIRED:
		poll.State = DeviceExpired
	case authv1.DeviceLoginState_DEVICE_LOGIN_STATE_APPROVED:
		if res.GetSession() == nil {
			return nil, localError(codes.Internal, "authd approved a device login without a session")
		}
		poll.State, poll.Session = DeviceApproved, newSessionFromProto(res.GetSession())
	default:
		return nil, localError(codes.Internal, "authd sent device login state %v", res.GetState())
	}
	return poll, nil
}

// AwaitDeviceLogin runs the RFC 8628 poll loop for login: it waits the
// interval, polls, and goes on while the login is pending, taking the longer
// interval of a slow down, until the user approves (the new session), denies
// ([ErrDeviceLoginDenied]), or the code expires ([ErrDeviceLoginExpired], also
// when login.ExpiresIn passes). An error from authd, or ctx ending, stops it.
func (c *Client) AwaitDeviceLogin(ctx context.Context, login *DeviceLogin, issuer string) (*NewSession, error) {
	interval := login.Interval
	if interval <= 0 {
		interval = 5 * time.Second // RFC 8628 §3.2's default
	}
	var expired <-chan time.Time
	if login.ExpiresIn > 0 {
		t := time.NewTimer(login.ExpiresIn)
		defer t.Stop()
		expired = t.C
	}
	for {
		wait := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			wait.Stop()
			return nil, ctx.Err()
		case <-expired:
			wait.Stop()
			return nil, ErrDeviceLoginExpired
		case <-wait.C:
		}
		poll, err := c.PollDeviceLogin(ctx, login.DeviceCode, interval, issuer)
		if err != nil {
			return nil, err
		}
		if poll.Interval > 0 {
			interval = poll.Interval
		}
		switch poll.State {
		case DeviceApproved:
			return poll.Session, nil
		case DeviceDenied:
			return nil, ErrDeviceLoginDenied
		case DeviceExpired:
			return nil, ErrDeviceLoginExpired
		case DeviceSlowDown:
			// RFC 8628 §3.5: at least 5 s more, whatever the answer says.
			interval = max(interval, poll.Interval)
		}
	}
}
