#include "signal_shims.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t interrupt_requested = 0;

static void on_interrupt(int signal_number) {
  (void)signal_number;
  interrupt_requested = 1;
}

void caption_install_interrupt_handlers(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGTERM, &action, NULL);
}

int caption_interrupt_requested(void) { return interrupt_requested ? 1 : 0; }

void caption_set_interrupt_requested(int value) { interrupt_requested = value ? 1 : 0; }
