//! A ComfyUI simulator: speaks ComfyUI 0.8.0's HTTP and WebSocket protocol so the gateway can be tested
//! without a GPU. Filled in by the simulator work.
