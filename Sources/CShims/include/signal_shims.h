// Ctrl-C / SIGTERM during training: the handler only sets a flag (all a signal handler may safely
// do); the training loop polls it between steps, saves, and exits with status 130.
#ifndef SIGNAL_SHIMS_H
#define SIGNAL_SHIMS_H

/// Installs handlers for SIGINT and SIGTERM that set the interrupt flag.
void caption_install_interrupt_handlers(void);
/// 1 once SIGINT or SIGTERM arrived, else 0.
int caption_interrupt_requested(void);
/// Sets or clears the flag (tests).
void caption_set_interrupt_requested(int value);

#endif
