// Package imagecheck holds tests, and nothing else, for the Zephyr image's
// files in container/: the Dockerfile (parsed with BuildKit's own parser and
// checked for the pinned versions, user, paths and build context), shellcheck
// over every shell script in the repository, and the behaviour of the image's
// scripts (entrypoints, launcher wrapper, NVIDIA diagnostics, CUDA validation)
// on a machine without GPUs, Spack, Torch or JAX, using stand-ins.
package imagecheck
