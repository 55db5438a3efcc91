"""The signaling protocol (versioned JSON over WebSocket) and ICE server configuration."""
