"""residual_policy and residual_mixer on top of a base controller that runs outside this package.

    ros2 launch residual_control residual_external_base.launch.py \
        base_action_topic:=/my_controller/commands command_topic:=/forward_effort_controller/commands
    ros2 launch residual_control residual_external_base.launch.py robot:=fer \
        base_action_topic:=/my_controller/commands base_action_type:=joint_state

The team's controller (a ros2_control controller, a vendor node, a C++ MPC) keeps running as it is;
its output topic, which used to feed the hardware's forward_command_controller, now feeds the two
nodes (``base_action`` remapped to ``base_action_topic``), and the mixer's ``commands`` feed the
hardware instead (``command_topic``). ``base_action_type`` says what the controller publishes:
``float64_multi_array`` (std_msgs/Float64MultiArray in the order of the params file's ``joints``,
unstamped, judged by its receipt time) or ``joint_state`` (sensor_msgs/JointState, effort by name,
stamped with the joint state it was computed from). What an unstamped base action costs (latency,
staleness detection) is in docs/external_base.md.

What the launch files share (node construction, parameters, arguments) is in
residual_control/launch_params.py.
"""
from residual_control.launch_params import PackageNodes, argument, launch_description, truthy


def _launch_setup(context, *args, **kwargs):
    nodes = PackageNodes(context)
    common = {'use_sim_time': truthy(nodes.arg('use_sim_time')),
              'base_action_type': nodes.arg('base_action_type')}
    # Only override model_path when given, so a params file's own value wins.
    model_path = nodes.arg('model_path')
    policy_overrides = dict(common, **({'model_path': model_path} if model_path else {}))
    joint_states = ('joint_states', nodes.arg('joint_states_topic'))
    base_action = ('base_action', nodes.arg('base_action_topic'))
    return [
        nodes.in_namespace([
            nodes.node('residual_policy', policy_overrides, [joint_states, base_action]),
            # joint_states: the state base_stale_behavior damp brings to rest
            nodes.node('residual_mixer', common,
                       [('commands', nodes.arg('command_topic')), joint_states, base_action]),
        ]),
        nodes.cleanup(),
    ]


def generate_launch_description():
    return launch_description(
        _launch_setup,
        argument('params_file', 'ROS 2 params file for the two nodes'),
        argument('robot', 'Robot folder (with robot.yaml) or a shipped robot\'s name: its params file and model '
                          'replace those arguments (empty: the arguments as given)'),
        argument('namespace', 'Namespace pushed onto the two nodes (empty: none)'),
        argument('model_path', 'ONNX residual policy; empty: the params file value '
                               '(empty there: the robot folder model, models/residual_bc.onnx for the '
                               'built-in arm)'),
        argument('use_sim_time', 'Use /clock (true with a simulator or gz-sim)', default='false'),
        argument('base_action_topic', 'Remap of `base_action` of both nodes: the external controller\'s output '
                                      'topic, e.g. /my_controller/commands', default='base_action'),
        argument('base_action_type', 'What the external controller publishes: float64_multi_array '
                                     '(std_msgs/Float64MultiArray in the order of joints, unstamped) or '
                                     'joint_state (sensor_msgs/JointState, effort, stamped)',
                 default='float64_multi_array'),
        argument('command_topic', 'Remap of the mixer output `commands` (std_msgs/Float64MultiArray): the '
                                  'hardware\'s command topic, e.g. /forward_effort_controller/commands',
                 default='commands'),
        argument('joint_states_topic', 'Remap of `joint_states` for residual_policy and residual_mixer',
                 default='joint_states'),
        argument('log_level', 'Log level of the two nodes (debug, info, warn, error)'),
    )
