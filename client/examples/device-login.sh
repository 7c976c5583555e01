#!/bin/sh
# An embedded client of authd with nothing but a POSIX shell and curl: the
# device login (RFC 8628) of a program with no browser, then its access
# token verified and its session refreshed, over the Connect protocol's JSON
# on authd's own port (no gRPC stack, no proxy).
#
#   AUTHD_URL=http://127.0.0.1:50051 sh client/examples/device-login.sh
#
# AUTHD_APPROVE=1 opens the approval link itself, which only `authd dev`'s
# development issuer approves without a person (the tests use it).
set -eu

A="${AUTHD_URL:-http://127.0.0.1:50051}/auth.v1.AuthService"

# POSTs JSON to an RPC; prints the answer, which is JSON also on an error.
call() {
    curl -sS -H 'content-type: application/json' -H 'connect-protocol-version: 1' \
        --data-binary "$2" "$A/$1"
}

# The value of a string field of an answer (authd's answers are one line).
field() {
    printf '%s' "$1" | sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p"
}

# The value of a number field.
number() {
    printf '%s' "$1" | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"
}

started=$(call StartDeviceLogin '{"scopes":["read:orders"]}')
device_code=$(field "$started" deviceCode)
if [ -z "$device_code" ]; then
    echo "authd refused to start a device login: $started" >&2
    exit 1
fi
interval=$(number "$started" interval)
interval=${interval:-5}
echo "On another device, open $(field "$started" verificationUri) and enter $(field "$started" userCode)"
if [ "${AUTHD_APPROVE:-}" = 1 ]; then
    curl -sS -o /dev/null "$(field "$started" verificationUriComplete)"
fi

while :; do
    answer=$(call PollDeviceLogin "{\"deviceCode\":\"$device_code\",\"interval\":$interval}")
    case $(field "$answer" state) in
    DEVICE_LOGIN_STATE_APPROVED) break ;;
    DEVICE_LOGIN_STATE_PENDING) ;;
    DEVICE_LOGIN_STATE_SLOW_DOWN) interval=$(number "$answer" interval) ;;
    *)
        echo "device login ended: $answer" >&2
        exit 1
        ;;
    esac
    sleep "$interval"
done

handle=$(field "$answer" sessionHandle)
token=$(field "$answer" accessToken)
verified=$(call VerifyToken "{\"token\":\"$token\",\"requiredScopes\":[\"read:orders\"]}")
subject=$(field "$verified" subject)
if [ -z "$subject" ]; then
    echo "the token was refused: $verified" >&2
    exit 1
fi
echo "verified: $subject"

# A program keeps the session handle (a secret) and refreshes when its
# access token nears expiry.
refreshed=$(call RefreshSession "{\"sessionHandle\":\"$handle\"}")
if [ -z "$(field "$refreshed" accessToken)" ]; then
    echo "refresh refused: $refreshed" >&2
    exit 1
fi
echo "refreshed: a new access token, valid until $(field "$refreshed" expiresAt)"
