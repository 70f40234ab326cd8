//! Samples CPU/RAM/GPU/VRAM of the Fooocus tree and the machine, cheaply and honestly.
