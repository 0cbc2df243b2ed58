// A thread's name as the system shows it (top -H, debuggers, /proc/self/task/*/comm): Foundation's
// Thread.name does not reach the system on Linux.
#ifndef THREAD_SHIMS_H
#define THREAD_SHIMS_H

/// Names the calling thread (at most 15 bytes are kept; longer names are cut).
void caption_name_current_thread(const char *name);

#endif
