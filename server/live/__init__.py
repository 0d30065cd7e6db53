"""Live streams: a source (an HLS playlist through our guarded client, or an RTSP, RTMP or
SRT URL that FFmpeg reads) gives frames sampled at 1 fps on the stream's own clock; a
follower encodes each complete DINO window into the store as it comes; the runner starts,
stops and takes over followers; `windows` reads a stream's windows for a question as
one video."""
