package gpu

import (
	"strconv"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// returnNames are nvml.h's names for the results we meet. errorName uses
// them instead of ret.Error(), which asks the library (nvmlErrorString)
// once it is loaded: after a failed Init not even that call is made, and
// the names read the same whether the library is loaded or not.
var returnNames = map[nvml.Return]string{
	nvml.SUCCESS:                       "SUCCESS",
	nvml.ERROR_UNINITIALIZED:           "ERROR_UNINITIALIZED",
	nvml.ERROR_INVALID_ARGUMENT:        "ERROR_INVALID_ARGUMENT",
	nvml.ERROR_NOT_SUPPORTED:           "ERROR_NOT_SUPPORTED",
	nvml.ERROR_NO_PERMISSION:           "ERROR_NO_PERMISSION",
	nvml.ERROR_ALREADY_INITIALIZED:     "ERROR_ALREADY_INITIALIZED",
	nvml.ERROR_NOT_FOUND:               "ERROR_NOT_FOUND",
	nvml.ERROR_INSUFFICIENT_SIZE:       "ERROR_INSUFFICIENT_SIZE",
	nvml.ERROR_INSUFFICIENT_POWER:      "ERROR_INSUFFICIENT_POWER",
	nvml.ERROR_DRIVER_NOT_LOADED:       "ERROR_DRIVER_NOT_LOADED",
	nvml.ERROR_TIMEOUT:                 "ERROR_TIMEOUT",
	nvml.ERROR_IRQ_ISSUE:               "ERROR_IRQ_ISSUE",
	nvml.ERROR_LIBRARY_NOT_FOUND:       "ERROR_LIBRARY_NOT_FOUND",
	nvml.ERROR_FUNCTION_NOT_FOUND:      "ERROR_FUNCTION_NOT_FOUND",
	nvml.ERROR_CORRUPTED_INFOROM:       "ERROR_CORRUPTED_INFOROM",
	nvml.ERROR_GPU_IS_LOST:             "ERROR_GPU_IS_LOST",
	nvml.ERROR_RESET_REQUIRED:          "ERROR_RESET_REQUIRED",
	nvml.ERROR_OPERATING_SYSTEM:        "ERROR_OPERATING_SYSTEM",
	nvml.ERROR_LIB_RM_VERSION_MISMATCH: "ERROR_LIB_RM_VERSION_MISMATCH",
	nvml.ERROR_IN_USE:                  "ERROR_IN_USE",
	nvml.ERROR_MEMORY:                  "ERROR_MEMORY",
	nvml.ERROR_NO_DATA:                 "ERROR_NO_DATA",
	nvml.ERROR_INSUFFICIENT_RESOURCES:  "ERROR_INSUFFICIENT_RESOURCES",
	nvml.ERROR_DEPRECATED:              "ERROR_DEPRECATED",
	nvml.ERROR_NOT_READY:               "ERROR_NOT_READY",
	nvml.ERROR_GPU_NOT_FOUND:           "ERROR_GPU_NOT_FOUND",
	nvml.ERROR_INVALID_STATE:           "ERROR_INVALID_STATE",
	nvml.ERROR_UNKNOWN:                 "ERROR_UNKNOWN",
}

// errorName is nvml.h's name for ret, found without calling NVML.
func errorName(ret nvml.Return) string {
	if n, ok := returnNames[ret]; ok {
		return n
	}
	return "NVML error " + strconv.Itoa(int(ret))
}
