package agent

import (
	"errors"
	"testing"
)

func TestNetworkTrouble(t *testing.T) {
	for msg, want := range map[string]bool{
		"install: pnpm install --frozen-lockfile: exit 1: ERR_PNPM_OUTDATED_LOCKFILE  Cannot install with \"frozen-lockfile\"":                             false,
		"install: pnpm install: exit 1: ERR_PNPM_META_FETCH_FAIL  GET https://registry.npmjs.org/pg: request to ... failed, reason: getaddrinfo EAI_AGAIN": true,
		"install: pnpm install: exit 1: FetchError: request to https://registry.npmjs.org/ms failed, reason: connect ECONNREFUSED 127.0.0.1:443":           true,
		"install: pnpm install: exit 1: ERR_PNPM_LIFECYCLE  postinstall: exit 1":                                                                           false,
	} {
		if got := networkTrouble(errors.New(msg)); got != want {
			t.Errorf("networkTrouble(%q) = %v, want %v", msg, got, want)
		}
	}
}
