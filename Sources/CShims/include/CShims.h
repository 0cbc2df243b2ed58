// C shims: only what Swift cannot do itself.
// - libjpeg and libpng report fatal errors by longjmp (or exit()); Swift cannot call setjmp,
//   so decoding runs inside these functions, which turn those errors into return codes.
// - signal handlers that only set a flag (signal_shims.h), which Swift cannot write safely.
// - a thread's name as the system shows it (thread_shims.h), which Glibc's Swift overlay lacks.
#ifndef CSHIMS_H
#define CSHIMS_H
#include <stddef.h>
#include <stdint.h>
#include "image_shims.h"

#include "signal_shims.h"
#include "thread_shims.h"

#endif
