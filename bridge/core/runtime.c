#include "bridge/core/runtime.h"

#include <stddef.h>

struct butler_runtime *butler_runtime_current;

bool butler_runtime_stopping(void)
{
    return butler_runtime_current && atomic_load(&butler_runtime_current->stopping);
}
