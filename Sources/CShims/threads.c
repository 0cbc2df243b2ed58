#define _GNU_SOURCE
#include "thread_shims.h"

#include <pthread.h>
#include <string.h>

void caption_name_current_thread(const char *name) {
  char kept[16];
  strncpy(kept, name, sizeof kept - 1);
  kept[sizeof kept - 1] = '\0';
  pthread_setname_np(pthread_self(), kept);
}
