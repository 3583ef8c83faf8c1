package gpu

import "github.com/NVIDIA/go-nvml/pkg/nvml"

// systemLibrary is the host's NVML, loaded at Init (dlopen): a host without
// the library gets ERROR_LIBRARY_NOT_FOUND from Init, not a failed start.
func systemLibrary(path string) Library {
	if path == "" {
		return nvml.New()
	}
	return nvml.New(nvml.WithLibraryPath(path))
}
