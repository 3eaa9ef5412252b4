"""Robot logs: the topics a recording holds, rosbag2 writing and reading (through ``rosbags``), episodes.

Never imported by the runtime nodes except the recorder (``nodes/recorder.py``).
"""
