// Command spack-depgraph writes a Markdown dependency graph (roots, a package
// table and a mermaid DAG) from a Spack lockfile.
//
//	go run ./cmd/spack-depgraph -o pkg/zephyr/DEPENDENCY_GRAPH.md pkg/zephyr/spack.lock
//
// The output depends only on the lockfile and the flags, so regenerating it
// from the same lock gives the same bytes.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sygaldry/sygaldry/spacklock"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "spack-depgraph:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("spack-depgraph", flag.ContinueOnError)
	out := fs.String("o", "", "write the Markdown here instead of stdout (replaced atomically)")
	title := fs.String("title", "", "document title (default \"Dependency graph\")")
	source := fs.String("source", "", "lockfile name printed in the header (default: the LOCKFILE argument as given)")
	variants := fs.String("variants", strings.Join(spacklock.DefaultKeyVariants, ","), "comma-separated variants shown in the tables")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: spack-depgraph [-o FILE] [-title T] [-source NAME] [-variants a,b] LOCKFILE")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("want exactly one LOCKFILE argument, got %d", fs.NArg())
	}
	lockPath := fs.Arg(0)
	lf, err := spacklock.ParseFile(lockPath)
	if err != nil {
		return err
	}
	opt := spacklock.MarkdownOptions{Title: *title, Source: *source}
	if opt.Source == "" {
		opt.Source = filepath.ToSlash(lockPath)
	}
	opt.KeyVariants = []string{}
	for _, v := range strings.Split(*variants, ",") {
		if v = strings.TrimSpace(v); v != "" {
			opt.KeyVariants = append(opt.KeyVariants, v)
		}
	}
	var buf bytes.Buffer
	if err := spacklock.WriteMarkdown(&buf, lf, opt); err != nil {
		return err
	}
	if *out == "" {
		_, err := os.Stdout.Write(buf.Bytes())
		return err
	}
	return writeAtomic(*out, buf.Bytes())
}

// writeAtomic replaces path so a reader never sees half a document.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
