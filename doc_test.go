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
			files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
			name, documented := "", false
			for _, file := range files {
				if strings.HasSuffix(file, "_test.go") {
					continue
				}
				f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ParseComments|parser.PackageClauseOnly)
				if err != nil {
					t.Fatal(err)
				}
				name = f.Name.Name
				documented = documented || (f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "")
			}
			if name != "" && !documented {
				t.Errorf("package %s in %s has no doc comment (add a doc.go)", name, dir)
			}
			return nil
		})
	}
}
