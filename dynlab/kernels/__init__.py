"""Pure array functions, one module or folder per algorithm; they import nothing of dynlab."""
