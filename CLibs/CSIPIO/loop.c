#include "CSIPIO.h"
