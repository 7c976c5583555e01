package httpauth

import "testing"

func TestDescriptionKeepsOnlyAllowedCharacters(t *testing.T) {
	if got := quoted(`bad "kid" \ é`); got != "bad 'kid' / ?" {
		t.Fatalf("%q", got)
	}
}
