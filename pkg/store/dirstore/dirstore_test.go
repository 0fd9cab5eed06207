package dirstore_test

import (
	"testing"

	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/store/dirstore"
	"github.com/cohuron/deploy/pkg/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := dirstore.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
