package spacklock

import (
	"bytes"
	"flag"
	"os"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenCases are also the documents pkg/zephyr/DEPENDENCY_GRAPH.md points to
// as examples; cmd/spack-depgraph's test checks the command gives the same bytes.
var goldenCases = []struct {
	lock, golden, source, title string
}{
	{"testdata/cuda-nccl.v5.spack.lock", "testdata/cuda-nccl.DEPENDENCY_GRAPH.md", "spacklock/testdata/cuda-nccl.v5.spack.lock", "Example: cuda-nccl environment (test fixture, not Zephyr)"},
	{"testdata/handmade.v6.spack.lock", "testdata/handmade.v6.DEPENDENCY_GRAPH.md", "spacklock/testdata/handmade.v6.spack.lock", "Example: hand-written v6 lock (test fixture, not Zephyr)"},
}

func TestMarkdownGolden(t *testing.T) {
	for _, gc := range goldenCases {
		t.Run(gc.golden, func(t *testing.T) {
			lf, err := ParseFile(gc.lock)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteMarkdown(&buf, lf, MarkdownOptions{Title: gc.title, Source: gc.source}); err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(gc.golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(gc.golden)
			if err != nil {
				t.Fatalf("%v (run `go test ./spacklock -run Golden -update` to create it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("output differs from %s; if the change is intended, run `go test ./spacklock -run Golden -update` and review the diff\n%s",
					gc.golden, firstDiff(buf.String(), string(want)))
			}
		})
	}
}

// The document covers the whole DAG: a table row and a node per spec, an edge
// per dependency, the roots marked.
func TestMarkdownCoversTheDAG(t *testing.T) {
	lf, err := ParseFile(fixtureLock)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteMarkdown(&buf, lf, MarkdownOptions{}); err != nil {
		t.Fatal(err)
	}
	doc := buf.String()

	if !strings.HasPrefix(doc, "# Dependency graph\n") {
		t.Errorf("default title missing: %q", doc[:40])
	}
	start := strings.Index(doc, "```mermaid\n")
	end := strings.LastIndex(doc, "```\n")
	if start < 0 || end <= start {
		t.Fatal("no mermaid block")
	}
	graph := doc[start:end]

	edges := 0
	for _, s := range lf.Specs {
		edges += len(s.Dependencies)
		node := "  s_" + s.Hash[:7] + `["` + s.Name + "@" + s.Version + `"]`
		if !strings.Contains(graph, node+"\n") {
			t.Errorf("graph lacks node %q", node)
		}
		row := "| `" + s.Hash[:7] + "` |"
		if !strings.Contains(doc, row) {
			t.Errorf("table lacks a row for %s (%s)", s.Name, s.Hash)
		}
	}
	gotEdges := strings.Count(graph, " --> ") + strings.Count(graph, " -.-> ")
	if gotEdges != edges {
		t.Errorf("graph has %d edges, lockfile has %d dependencies", gotEdges, edges)
	}
	// nccl links cuda (solid), builds with gmake (dotted).
	for _, e := range []string{"s_pmwbbxf --> s_bxii57n", "s_pmwbbxf -.-> s_ljryq2x"} {
		if !strings.Contains(graph, "  "+e+"\n") {
			t.Errorf("graph lacks edge %q", e)
		}
	}
	if !strings.Contains(graph, "class s_bxii57n,s_pmwbbxf root") {
		t.Error("roots not marked")
	}
	if !strings.Contains(doc, "| nccl | 2.22.3-1 | `pmwbbxf` | gcc@11.4.1 | `+cuda` `cuda_arch=80` |") {
		t.Error("nccl row lacks its key variants")
	}
	if !strings.Contains(doc, "| glibc (external `/usr`) |") {
		t.Error("external glibc not marked")
	}
}

func TestMarkdownKeyVariantsOption(t *testing.T) {
	lf, err := ParseFile(fixtureLock)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteMarkdown(&buf, lf, MarkdownOptions{KeyVariants: []string{"build_system"}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "| nccl | 2.22.3-1 | `pmwbbxf` | gcc@11.4.1 | `build_system=makefile` |") {
		t.Error("custom key variants not used")
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "first difference at line " + strconv.Itoa(i+1) + ":\n  got:  " + gl + "\n  want: " + wl
		}
	}
	return ""
}
