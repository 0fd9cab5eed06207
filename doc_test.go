package deploy_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackagesHaveDocs fails for a package under pkg/, cmd/ or internal/
// without a package doc comment: every package says what it is for.
func TestPackagesHaveDocs(t *testing.T) {
	for _, top := range []string{"pkg", "cmd", "internal"} {
		filepath.WalkDir(top, func(dir string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() || strings.Contains(dir, "testdata") {
				return err
			}
			pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi os.FileInfo) bool {
				return !strings.HasSuffix(fi.Name(), "_test.go")
			}, parser.ParseComments|parser.PackageClauseOnly)
			if err != nil {
				t.Fatal(err)
			}
			for name, p := range pkgs {
				documented := false
				for _, f := range p.Files {
					if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
						documented = true
					}
				}
				if !documented {
					t.Errorf("package %s in %s has no doc comment (add a doc.go)", name, dir)
				}
			}
			return nil
		})
	}
}
