"""operator/wabot_operator"""
