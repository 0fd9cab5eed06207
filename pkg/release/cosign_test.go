package release_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/reliability"
	"github.com/cohuron/deploy/pkg/release"
	"github.com/cohuron/deploy/pkg/signing"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/trust"
)

// newKey is a fresh throwaway key pair, one per signer a test needs.
func newKey(t *testing.T) (signing.Signer, []byte) {
	t.Helper()
	s, pub, err := generateKey()
	if err != nil {
		t.Fatal(err)
	}
	return s, pub
}

// policyOf builds a policy trusting the named keys with a threshold;
// windows maps a signer name to its extra YAML (notBefore/notAfter).
func policyOf(t *testing.T, threshold int, pubs map[string][]byte, windows map[string]string) *trust.Policy {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: deploy.cohuron.dev/v1\nkind: TrustPolicy\nmetadata:\n  name: demo\nspec:\n  signers:\n")
	for _, name := range []string{"ci", "security", "ops", "ci-2027"} {
		pub, ok := pubs[name]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "    - name: %s\n      publicKey: |\n        %s\n", name, strings.ReplaceAll(strings.TrimSpace(string(pub)), "\n", "\n        "))
		if w := windows[name]; w != "" {
			fmt.Fprintf(&b, "      %s\n", w)
		}
	}
	fmt.Fprintf(&b, "  threshold: %d\n  environments: [demo]\n  branches: [\"*\"]\n", threshold)
	p, err := trust.Parse("policy.yaml", []byte(b.String()), nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return p
}

func (f *fixture) publisherWith(clock func() time.Time, signers ...signing.Signer) *release.Publisher {
	return &release.Publisher{Store: f.st, Signers: signers, Now: clock, Log: slog.New(slog.DiscardHandler)}
}

func latestHint(t *testing.T, st store.Store) uint64 {
	t.Helper()
	seq, err := release.LatestHint(context.Background(), st, "demo")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return seq
}

// TestThresholdCoSigning: with a 2-of-3 policy a release signed by one
// key is published but not announced; an untrusted co-signer changes
// nothing; the second trusted signer completes it and moves latest.
func TestThresholdCoSigning(t *testing.T) {
	reliability.Record(t, reliability.Case{Area: reliability.AreaTrust, Name: "threshold-2-of-3",
		Attack:  "one leaked signing key publishes a release (policy needs 2 of 3 signers)",
		Defense: "the release stays unannounced and agents refuse it until a second trusted signer co-signs (publisher sign)"})
	ctx := context.Background()
	f := newFixture(t)
	clock := func() time.Time { return now }
	ci, ciPub := newKey(t)
	sec, secPub := newKey(t)
	_, opsPub := newKey(t)
	mallory, _ := newKey(t)
	pol := policyOf(t, 2, map[string][]byte{"ci": ciPub, "security": secPub, "ops": opsPub}, nil)

	res, err := f.publisherWith(clock, ci).Publish(ctx, release.Request{Env: f.env, Bundle: f.localBundle(t), Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	if res.AwaitingSignatures != 1 || latestHint(t, f.st) != 0 {
		t.Fatalf("awaiting %d, latest %d; want 1 awaiting and no latest hint", res.AwaitingSignatures, latestHint(t, f.st))
	}
	_, err = release.FetchVerified(ctx, f.st, "demo", res.Seq, pol, trust.Expect{Env: "demo", Now: now})
	if !errors.Is(err, trust.ErrBelowThreshold) {
		t.Fatalf("an agent reading it anyway: err = %v, want ErrBelowThreshold", err)
	}

	// A key nobody trusts cannot co-sign its way in, and writes nothing.
	before, _ := release.ReadSigs(ctx, f.st, store.ReleaseKey("demo", res.Seq))
	if _, err := f.publisherWith(clock, mallory).CoSign(ctx, "demo", res.Seq, pol); err == nil || !strings.Contains(err.Error(), "not one of the signers") {
		t.Fatalf("co-signing with an untrusted key: err = %v, want a refusal", err)
	}
	if after, _ := release.ReadSigs(ctx, f.st, store.ReleaseKey("demo", res.Seq)); len(after) != len(before) || latestHint(t, f.st) != 0 {
		t.Fatalf("a refused co-signer changed the store: %d signature lines (was %d), latest %d", len(after), len(before), latestHint(t, f.st))
	}

	// The second trusted signer completes it.
	cs, err := f.publisherWith(clock, sec).CoSign(ctx, "demo", res.Seq, pol)
	if err != nil {
		t.Fatal(err)
	}
	if cs.AwaitingSignatures != 0 || latestHint(t, f.st) != res.Seq {
		t.Fatalf("after the second signer: awaiting %d, latest %d; want 0 and %d", cs.AwaitingSignatures, latestHint(t, f.st), res.Seq)
	}
	v, err := release.FetchLatestVerified(ctx, f.st, "demo", pol, trust.Expect{Env: "demo", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := release.VerifyBundle(ctx, f.st, v.Release, pol, now); err != nil {
		t.Fatalf("bundle after co-signing: %v", err)
	}
	if len(v.Signers) != 2 {
		t.Errorf("signers = %v, want ci and security", v.Signers)
	}

	// Co-signing again replaces the signer's own line instead of piling up.
	sigs, _ := release.ReadSigs(ctx, f.st, v.Key)
	if _, err := f.publisherWith(clock, sec).CoSign(ctx, "demo", res.Seq, pol); err != nil {
		t.Fatal(err)
	}
	again, _ := release.ReadSigs(ctx, f.st, v.Key)
	if len(again) != len(sigs) {
		t.Errorf("signature lines %d after signing again, want %d", len(again), len(sigs))
	}

	// A co-signer refuses a release only untrusted keys signed.
	res2, err := f.publisherWith(clock, mallory).Publish(ctx, release.Request{Env: f.env, ReuseSeq: res.Seq, Policy: pol})
	if err == nil {
		t.Fatalf("publishing with an untrusted key under a policy: seq %d, want a refusal before anything is written", res2.Seq)
	}
	seqs, _ := release.Seqs(ctx, f.st, "demo")
	if len(seqs) != 1 {
		t.Errorf("seqs = %v after a refused publish, want only %d", seqs, res.Seq)
	}
}

// TestKeyRotationNoWindow rotates from key ci to ci-2027: while hosts
// update their policy the publisher signs with both, so hosts on either
// policy accept every release; then the old key stops counting at its
// notAfter even on a host whose policy file is never updated again.
func TestKeyRotationNoWindow(t *testing.T) {
	reliability.Record(t, reliability.Case{Area: reliability.AreaTrust, Name: "key-rotation",
		Attack:  "rotating the signing key: a window where hosts accept nothing, or the old key trusted forever",
		Defense: "publish with both keys during the overlap; the old signer's notAfter ends its trust by the host clock"})
	ctx := context.Background()
	f := newFixture(t)
	old, oldPub := newKey(t)
	next, nextPub := newKey(t)
	cutoff := now.Add(7 * 24 * time.Hour)
	oldPolicy := policyOf(t, 1, map[string][]byte{"ci": oldPub}, nil)
	newPolicy := policyOf(t, 1, map[string][]byte{"ci": oldPub, "ci-2027": nextPub},
		map[string]string{"ci": "notAfter: " + cutoff.UTC().Format(time.RFC3339)})
	retired := policyOf(t, 1, map[string][]byte{"ci": oldPub}, map[string]string{"ci": "notAfter: " + cutoff.UTC().Format(time.RFC3339)})

	verify := func(pol *trust.Policy, at time.Time) error {
		v, err := release.FetchLatestVerified(ctx, f.st, "demo", pol, trust.Expect{Env: "demo", Now: at})
		if err != nil {
			return err
		}
		_, err = release.VerifyBundle(ctx, f.st, v.Release, pol, at)
		return err
	}
	clock := func() time.Time { return now }

	// Before: old key only.
	if _, err := f.publisherWith(clock, old).Publish(ctx, release.Request{Env: f.env, Bundle: f.localBundle(t)}); err != nil {
		t.Fatal(err)
	}
	// Overlap: both keys sign; hosts on the old and the new policy accept.
	if _, err := f.publisherWith(clock, old, next).Publish(ctx, release.Request{Env: f.env, Bundle: f.localBundle(t), Policy: newPolicy}); err != nil {
		t.Fatal(err)
	}
	for name, pol := range map[string]*trust.Policy{"old policy": oldPolicy, "new policy": newPolicy} {
		if err := verify(pol, now.Add(time.Hour)); err != nil {
			t.Errorf("overlap, host on the %s: %v", name, err)
		}
	}
	// After: the new key alone; hosts on the new policy accept.
	later := func() time.Time { return cutoff.Add(time.Hour) }
	if _, err := f.publisherWith(later, next).Publish(ctx, release.Request{Env: f.env, ReuseSeq: 2, Policy: newPolicy}); err != nil {
		t.Fatal(err)
	}
	if err := verify(newPolicy, cutoff.Add(2*time.Hour)); err != nil {
		t.Errorf("after the cutoff, host on the new policy: %v", err)
	}
	// A release signed by the old key alone after its cutoff (say the key
	// leaked) is refused by every host whose policy carries the cutoff.
	if _, err := f.publisherWith(later, old).Publish(ctx, release.Request{Env: f.env, ReuseSeq: 2, Policy: oldPolicy}); err != nil {
		t.Fatal(err)
	}
	for name, pol := range map[string]*trust.Policy{"new policy": newPolicy, "old key with its cutoff": retired} {
		err := verify(pol, cutoff.Add(2*time.Hour))
		var ve *trust.VerificationError
		if !errors.As(err, &ve) || !strings.Contains(ve.Found, "trusted only until") {
			t.Errorf("old key after its cutoff, host on the %s: err = %v, want a rejection naming the cutoff", name, err)
		}
	}
}

// TestKeyRotationConfigOnly: during a rotation the releases may all be
// config-only, keeping a bundle only the old key signed. The new key must
// sign that bundle too, or hosts that trust only the new key refuse it,
// and a later publish with the new key alone cannot verify what it keeps.
// (Found by the operator's guide test.)
func TestKeyRotationConfigOnly(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	old, _ := newKey(t)
	next, nextPub := newKey(t)
	onlyNext := policyOf(t, 1, map[string][]byte{"ci-2027": nextPub}, nil)
	clock := func() time.Time { return now }

	if _, err := f.publisherWith(clock, old).Publish(ctx, release.Request{Env: f.env, Bundle: f.localBundle(t)}); err != nil {
		t.Fatal(err)
	}
	res, err := f.publisherWith(clock, old, next).Publish(ctx, release.Request{Env: f.env})
	if err != nil {
		t.Fatal(err)
	}
	if !res.ConfigOnly {
		t.Fatal("want a config-only release")
	}
	v, err := release.FetchLatestVerified(ctx, f.st, "demo", onlyNext, trust.Expect{Env: "demo", Now: now})
	if err != nil {
		t.Fatalf("release signed by both keys, host trusting the new one: %v", err)
	}
	if _, err := release.VerifyBundle(ctx, f.st, v.Release, onlyNext, now); err != nil {
		t.Fatalf("kept bundle, host trusting the new key only: %v", err)
	}
	sigs, err := release.ReadSigs(ctx, f.st, v.Release.Bundle.Key)
	if err != nil || len(sigs) != 2 {
		t.Fatalf("kept bundle has %d signature lines (%v), want the old key's and the new key's", len(sigs), err)
	}
	if _, err := f.publisherWith(clock, next).Publish(ctx, release.Request{Env: f.env}); err != nil {
		t.Fatalf("config-only publish with the new key alone: %v", err)
	}
}
