#include <mpi.h>

// Open MPI's handles (MPI_COMM_WORLD, MPI_BYTE, MPI_ERRORS_RETURN) are macros over the addresses of
// its global structs (&ompi_mpi_comm_world), which Swift cannot import: these functions return them.
static inline MPI_Comm caption_mpi_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype caption_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Errhandler caption_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Request caption_mpi_request_null(void) { return MPI_REQUEST_NULL; }
