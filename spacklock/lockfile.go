// Package spacklock reads Spack environment lockfiles (spack.lock) and renders
// their dependency DAG as Markdown.
//
// A lockfile is JSON with four top-level sections: `_meta` (file type and
// format versions), `spack` (which Spack wrote it), `roots` (the environment's
// root specs, each a DAG hash and the abstract spec it came from) and
// `concrete_specs` (every node of the DAG, keyed by its DAG hash). Versions 4
// to 7 share that shape and are all keyed by the DAG hash; they differ in the
// node records:
//
//   - v4 (Spack 0.18-0.21, specfile v3): dependency edges carry `type`.
//   - v5 (Spack 0.22-0.23, specfile v4): edges carry `parameters.deptypes` and
//     `parameters.virtuals`; an optional `include_concrete` holds the roots
//     and specs of included environments.
//   - v6 (Spack 1.0-1.1, specfile v5): compilers are build dependencies that
//     provide the `c`/`cxx`/`fortran` virtuals instead of a `compiler` field.
//   - v7 (Spack 1.2): roots gain a `group`.
//
// Versions 1-3 are keyed by other hashes (see the format notes in Spack's
// lib/spack/spack/environment/__init__.py) and are refused.
package spacklock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// MinVersion and MaxVersion bound the lockfile-version values Parse accepts.
const (
	MinVersion = 4
	MaxVersion = 7
)

// Sentinel errors, wrapped with detail by Parse.
var (
	// ErrNotLockfile: the input is JSON but not a Spack lockfile.
	ErrNotLockfile = errors.New("not a spack lockfile")
	// ErrUnsupportedVersion: the lockfile-version is outside MinVersion..MaxVersion.
	ErrUnsupportedVersion = errors.New("unsupported spack lockfile version")
	// ErrInconsistent: a hash refers to a spec the lockfile does not hold.
	ErrInconsistent = errors.New("inconsistent spack lockfile")
)

// Lockfile is a parsed spack.lock.
type Lockfile struct {
	// Version is _meta.lockfile-version.
	Version int
	// SpecfileVersion is _meta.specfile-version; 0 when the file has none.
	SpecfileVersion int
	// Spack says which Spack wrote the file; nil when the file does not say.
	Spack *SpackInfo
	// Roots are the environment's roots in file order, then the roots of
	// included environments (include_concrete) in path order.
	Roots []Root
	// Specs holds every concrete spec, keyed by DAG hash, including those of
	// included environments.
	Specs map[string]*Spec
}

// SpackInfo is the lockfile's `spack` section.
type SpackInfo struct {
	Version string `json:"version"`
	Type    string `json:"type"`   // "git" or "release"
	Commit  string `json:"commit"` // empty for releases
}

// Root is one entry of `roots`.
type Root struct {
	Hash string // DAG hash of the concrete root
	Spec string // the abstract spec the user wrote
	// Group is the v7 root group; empty before v7.
	Group string
	// Included is the path of the included environment this root comes from;
	// empty for the environment's own roots.
	Included string
}

// Spec is one concrete spec (a node of the DAG).
type Spec struct {
	Hash      string
	Name      string
	Version   string
	Namespace string
	Arch      Arch
	// Compiler is the node's compiler attribute (lockfile v4/v5); nil from v6
	// on, where the compiler is a build dependency (see Lockfile.CompilerOf).
	Compiler *Compiler
	// Parameters are the spec's parameters: variants, compiler flags and
	// patches, as Spack wrote them.
	Parameters map[string]json.RawMessage
	// External is set for specs Spack did not build.
	External *External
	// Dependencies are the direct dependencies, sorted by name then hash.
	Dependencies []Dep
}

// Arch is the spec's architecture triple.
type Arch struct {
	Platform string // e.g. "linux"
	OS       string // e.g. "ubuntu24.04"
	Target   string // microarchitecture name, e.g. "icelake"
}

// Compiler is a v4/v5 node's compiler attribute.
type Compiler struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

func (c *Compiler) String() string { return c.Name + "@" + c.Version }

// External describes a spec that lives outside Spack's install tree.
type External struct {
	Path   string // prefix, e.g. "/usr"
	Module string // environment module, when the external is one
}

// Dep is a dependency edge.
type Dep struct {
	Name string
	Hash string
	// Types are the dependency types ("build", "link", "run", "test"), sorted.
	Types []string
	// Virtuals are the virtual packages this edge provides (e.g. "mpi", "c").
	Virtuals []string
	// Direct is the v6 `direct` flag (the user wrote `%dep`); false otherwise.
	Direct bool
}

// HasType reports whether the edge has dependency type t.
func (d Dep) HasType(t string) bool { return slices.Contains(d.Types, t) }

// ParseFile reads and parses the lockfile at path.
func ParseFile(path string) (*Lockfile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lf, err := Parse(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return lf, nil
}

// raw* mirror the JSON; they are converted and checked into the exported types.
type rawLockfile struct {
	Meta            *rawMeta               `json:"_meta"`
	Spack           *SpackInfo             `json:"spack"`
	Roots           []rawRoot              `json:"roots"`
	ConcreteSpecs   map[string]rawSpec     `json:"concrete_specs"`
	IncludeConcrete map[string]rawLockfile `json:"include_concrete"`
}

type rawMeta struct {
	FileType        string `json:"file-type"`
	LockfileVersion *int   `json:"lockfile-version"`
	SpecfileVersion int    `json:"specfile-version"`
}

type rawRoot struct {
	Hash  string `json:"hash"`
	Spec  string `json:"spec"`
	Group string `json:"group"`
}

type rawSpec struct {
	Name         string                     `json:"name"`
	Version      json.RawMessage            `json:"version"`
	Namespace    string                     `json:"namespace"`
	Arch         *rawArch                   `json:"arch"`
	Compiler     *Compiler                  `json:"compiler"`
	Parameters   map[string]json.RawMessage `json:"parameters"`
	External     *rawExternal               `json:"external"`
	Dependencies []rawDep                   `json:"dependencies"`
	Hash         string                     `json:"hash"`
}

type rawArch struct {
	Platform   string          `json:"platform"`
	PlatformOS string          `json:"platform_os"`
	Target     json.RawMessage `json:"target"`
}

type rawExternal struct {
	Path   *string `json:"path"`
	Module any     `json:"module"`
}

type rawDep struct {
	Name       string   `json:"name"`
	Hash       string   `json:"hash"`
	Type       []string `json:"type"` // v4
	Parameters *struct {
		Deptypes []string `json:"deptypes"`
		Virtuals []string `json:"virtuals"`
		Direct   bool     `json:"direct"`
	} `json:"parameters"` // v5+
}

// Parse reads a Spack lockfile (lockfile-version MinVersion..MaxVersion) and
// checks that every root and dependency hash names a spec in the file.
func Parse(r io.Reader) (*Lockfile, error) {
	var raw rawLockfile
	dec := json.NewDecoder(r)
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("parse spack lockfile: %w", err)
	}
	if raw.Meta == nil {
		return nil, fmt.Errorf("%w: no _meta section", ErrNotLockfile)
	}
	if raw.Meta.FileType != "spack-lockfile" {
		return nil, fmt.Errorf("%w: _meta.file-type is %q, want \"spack-lockfile\"", ErrNotLockfile, raw.Meta.FileType)
	}
	if raw.Meta.LockfileVersion == nil {
		return nil, fmt.Errorf("%w: no _meta.lockfile-version", ErrNotLockfile)
	}
	v := *raw.Meta.LockfileVersion
	if v < MinVersion || v > MaxVersion {
		return nil, fmt.Errorf("%w: lockfile-version %d (this reader handles %d to %d)", ErrUnsupportedVersion, v, MinVersion, MaxVersion)
	}
	if raw.ConcreteSpecs == nil {
		return nil, fmt.Errorf("%w: no concrete_specs section", ErrNotLockfile)
	}

	lf := &Lockfile{
		Version:         v,
		SpecfileVersion: raw.Meta.SpecfileVersion,
		Spack:           raw.Spack,
		Specs:           make(map[string]*Spec),
	}
	if err := lf.add(raw, ""); err != nil {
		return nil, err
	}
	if err := lf.check(); err != nil {
		return nil, err
	}
	return lf, nil
}

// add converts one (possibly included) environment's roots and specs.
func (lf *Lockfile) add(raw rawLockfile, included string) error {
	for i, rr := range raw.Roots {
		if rr.Hash == "" {
			return fmt.Errorf("%w: roots[%d] (%q) has no hash", ErrInconsistent, i, rr.Spec)
		}
		lf.Roots = append(lf.Roots, Root{Hash: rr.Hash, Spec: rr.Spec, Group: rr.Group, Included: included})
	}
	for key, rs := range raw.ConcreteSpecs {
		s, err := convertSpec(key, rs)
		if err != nil {
			return err
		}
		lf.Specs[key] = s
	}
	paths := make([]string, 0, len(raw.IncludeConcrete))
	for p := range raw.IncludeConcrete {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := lf.add(raw.IncludeConcrete[p], p); err != nil {
			return fmt.Errorf("include_concrete %s: %w", p, err)
		}
	}
	return nil
}

func convertSpec(key string, rs rawSpec) (*Spec, error) {
	if rs.Name == "" {
		return nil, fmt.Errorf("%w: concrete spec %s has no name", ErrInconsistent, key)
	}
	if rs.Hash != "" && rs.Hash != key {
		return nil, fmt.Errorf("%w: concrete spec %s (%s) says its hash is %s", ErrInconsistent, key, rs.Name, rs.Hash)
	}
	version, err := jsonScalar(rs.Version)
	if err != nil {
		return nil, fmt.Errorf("%w: concrete spec %s (%s): version: %v", ErrInconsistent, key, rs.Name, err)
	}
	s := &Spec{
		Hash:       key,
		Name:       rs.Name,
		Version:    version,
		Namespace:  rs.Namespace,
		Compiler:   rs.Compiler,
		Parameters: rs.Parameters,
	}
	if rs.Arch != nil {
		s.Arch = Arch{Platform: rs.Arch.Platform, OS: rs.Arch.PlatformOS, Target: targetName(rs.Arch.Target)}
	}
	if rs.External != nil {
		s.External = &External{}
		if rs.External.Path != nil {
			s.External.Path = *rs.External.Path
		}
		if m, ok := rs.External.Module.(string); ok {
			s.External.Module = m
		}
	}
	for i, rd := range rs.Dependencies {
		if rd.Name == "" || rd.Hash == "" {
			return nil, fmt.Errorf("%w: concrete spec %s (%s): dependencies[%d] needs a name and a hash", ErrInconsistent, key, rs.Name, i)
		}
		d := Dep{Name: rd.Name, Hash: rd.Hash, Types: rd.Type}
		if rd.Parameters != nil {
			d.Types = rd.Parameters.Deptypes
			d.Virtuals = rd.Parameters.Virtuals
			d.Direct = rd.Parameters.Direct
		}
		d.Types = sortedCopy(d.Types)
		d.Virtuals = sortedCopy(d.Virtuals)
		s.Dependencies = append(s.Dependencies, d)
	}
	sort.Slice(s.Dependencies, func(i, j int) bool {
		a, b := s.Dependencies[i], s.Dependencies[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Hash < b.Hash
	})
	return s, nil
}

// check verifies that every hash the file mentions resolves.
func (lf *Lockfile) check() error {
	for _, r := range lf.Roots {
		if _, ok := lf.Specs[r.Hash]; !ok {
			return fmt.Errorf("%w: root %q has hash %s, which is not in concrete_specs", ErrInconsistent, r.Spec, r.Hash)
		}
	}
	for _, h := range lf.SortedHashes() {
		s := lf.Specs[h]
		for _, d := range s.Dependencies {
			ds, ok := lf.Specs[d.Hash]
			if !ok {
				return fmt.Errorf("%w: %s (%s) depends on %s with hash %s, which is not in concrete_specs", ErrInconsistent, s.Name, h, d.Name, d.Hash)
			}
			if ds.Name != d.Name {
				return fmt.Errorf("%w: %s (%s) depends on %s with hash %s, but that hash is %s", ErrInconsistent, s.Name, h, d.Name, d.Hash, ds.Name)
			}
		}
	}
	return nil
}

// SortedHashes returns every spec hash ordered by package name, version, then
// hash: the order the generated documents use, so output is deterministic.
func (lf *Lockfile) SortedHashes() []string {
	hs := make([]string, 0, len(lf.Specs))
	for h := range lf.Specs {
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool {
		a, b := lf.Specs[hs[i]], lf.Specs[hs[j]]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.Hash < b.Hash
	})
	return hs
}

// compilerVirtuals are the language virtuals a v6+ compiler dependency provides.
var compilerVirtuals = []string{"c", "cxx", "fortran"}

// CompilerOf returns the compiler that built s as "name@version": the v4/v5
// compiler attribute, or from v6 on the build dependency that provides a
// language virtual. It is empty when neither says (e.g. pure-data packages).
func (lf *Lockfile) CompilerOf(s *Spec) string {
	if s.Compiler != nil {
		return s.Compiler.String()
	}
	var found []string
	for _, d := range s.Dependencies {
		if !d.HasType("build") {
			continue
		}
		for _, v := range d.Virtuals {
			if slices.Contains(compilerVirtuals, v) {
				if ds := lf.Specs[d.Hash]; ds != nil {
					found = append(found, ds.Name+"@"+ds.Version)
				}
				break
			}
		}
	}
	slices.Sort(found)
	return strings.Join(slices.Compact(found), ", ")
}

// nonVariantParameters are the `parameters` keys that are not variants.
var nonVariantParameters = map[string]bool{
	"cflags": true, "cppflags": true, "cxxflags": true, "fflags": true,
	"ldflags": true, "ldlibs": true, "patches": true, "dev_path": true,
}

// Variant returns variant name formatted as Spack writes it on the command
// line: "+name" or "~name" for booleans, "name=a,b" otherwise.
func (s *Spec) Variant(name string) (string, bool) {
	if nonVariantParameters[name] {
		return "", false
	}
	raw, ok := s.Parameters[name]
	if !ok {
		return "", false
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err == nil {
		if b {
			return "+" + name, true
		}
		return "~" + name, true
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err == nil {
		vals := make([]string, 0, len(list))
		for _, e := range list {
			v, err := jsonScalar(e)
			if err != nil {
				return "", false
			}
			vals = append(vals, v)
		}
		return name + "=" + strings.Join(vals, ","), true
	}
	v, err := jsonScalar(raw)
	if err != nil {
		return "", false
	}
	return name + "=" + v, true
}

// Variants returns every variant of s, sorted by name, formatted as Variant does.
func (s *Spec) Variants() []string {
	names := make([]string, 0, len(s.Parameters))
	for k := range s.Parameters {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		if v, ok := s.Variant(n); ok {
			out = append(out, v)
		}
	}
	return out
}

// jsonScalar renders a JSON string or number as text.
func jsonScalar(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err == nil {
		return strconv.FormatBool(b), nil
	}
	return "", fmt.Errorf("want a string or number, got %s", raw)
}

// targetName accepts both target shapes: a bare string, or an object with a name.
func targetName(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	var obj struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(raw, &obj); err == nil {
		return obj.Name
	}
	return ""
}

func sortedCopy(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	slices.Sort(out)
	return out
}
