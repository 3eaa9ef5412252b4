"""HIL against Gazebo (gz-sim Harmonic, ROS 2 Jazzy) through gz_ros2_control.

    ros2 launch residual_control hil_gazebo.launch.py
    ros2 launch residual_control hil_gazebo.launch.py gui:=false namespace:=arm1

Starts:
  * gz sim with description/gazebo/arm_world.sdf (1 kHz physics);
  * ros_gz_bridge parameter_bridge with config/gazebo_bridge.yaml (/clock);
  * robot_state_publisher with the generated robot description: description/arm.urdf
    plus the <ros2_control> (gz_ros2_control/GazeboSimSystem, effort command,
    position/velocity state) and gz_ros2_control-system plugin blocks, injected
    at launch time by residual_control.hil.inject_ros2_control (one description);
  * ros_gz_sim create, spawning the arm from /robot_description;
  * controller_manager spawners: joint_state_broadcaster, then effort_controller
    (forward_command_controller, config/gazebo_controllers.yaml);
  * reference_publisher and perception;
  * residual_control.launch.py with use_sim_time:=true,
    commands -> /effort_controller/commands, joint_states -> /joint_states.

The gz-side pieces (gz sim, bridge, robot_state_publisher, controller_manager)
stay in the root namespace; `namespace` applies to the residual graph,
reference_publisher and perception, whose plant topics are remapped absolutely.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import AppendEnvironmentVariable, IncludeLaunchDescription, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_ros.actions import Node

from residual_control.hil import inject_ros2_control
from residual_control.launch_params import (PackageNodes, argument, common_joints, launch_description,
                                            outer_namespace, share_path, truthy)

WORLD_NAME = 'arm_world'          # <world name=...> in description/gazebo/arm_world.sdf
CONTROLLER_MANAGER = '/controller_manager'
EFFORT_CONTROLLER = 'effort_controller'
EFFORT_COMMAND_TOPIC = '/effort_controller/commands'
JOINT_STATES_TOPIC = '/joint_states'


def _spawner(controller):
    return Node(package='controller_manager', executable='spawner', output='screen',
                arguments=[controller, '--controller-manager', CONTROLLER_MANAGER])


def _launch_setup(context, *args, **kwargs):
    nodes = PackageNodes(context)
    with open(nodes.arg('urdf_file'), 'r', encoding='utf-8') as stream:
        robot_description = inject_ros2_control(
            stream.read(),
            common_joints(nodes.params_file),
            os.path.abspath(nodes.arg('controllers_file')),
            base_height=float(nodes.arg('base_height')),
        )

    # The gz side stays outside `namespace`: only an outer namespace applies to it. Its
    # parameters also go through nodes.params (generated files in the launch's private
    # folder, instead of launch_ros's temporary files).
    gz_side = bool(outer_namespace(context.launch_configurations))
    gz_args = f"-r -v 3 {nodes.arg('world')}" + ('' if truthy(nodes.arg('gui')) else ' -s')
    gz_sim = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(
            get_package_share_directory('ros_gz_sim'), 'launch', 'gz_sim.launch.py')),
        launch_arguments={'gz_args': gz_args, 'on_exit_shutdown': 'true'}.items(),
    )
    bridge = Node(
        package='ros_gz_bridge', executable='parameter_bridge', name='clock_bridge', output='screen',
        parameters=nodes.params('clock_bridge', [], {'config_file': nodes.arg('bridge_file')}, gz_side),
    )
    robot_state_publisher = Node(
        package='robot_state_publisher', executable='robot_state_publisher', name='robot_state_publisher',
        output='screen',
        parameters=nodes.params('robot_state_publisher', [],
                                {'robot_description': robot_description, 'use_sim_time': True}, gz_side),
    )
    spawn_robot = Node(
        package='ros_gz_sim', executable='create', name='spawn_arm', output='screen',
        arguments=['-world', WORLD_NAME, '-topic', 'robot_description',
                   '-name', nodes.arg('robot_name'), '-x', '0', '-y', '0', '-z', '0'],
    )
    joint_state_broadcaster_spawner = _spawner('joint_state_broadcaster')
    effort_controller_spawner = _spawner(EFFORT_CONTROLLER)

    return [
        gz_sim,
        bridge,
        robot_state_publisher,
        spawn_robot,
        # Controllers once the model (and with it the controller_manager) exists.
        RegisterEventHandler(OnProcessExit(
            target_action=spawn_robot, on_exit=[joint_state_broadcaster_spawner])),
        RegisterEventHandler(OnProcessExit(
            target_action=joint_state_broadcaster_spawner,
            on_exit=[effort_controller_spawner])),
        nodes.in_namespace(nodes.plant_side(use_sim_time=True)),
        nodes.runtime(True, EFFORT_COMMAND_TOPIC, JOINT_STATES_TOPIC),
        nodes.cleanup(),
    ]


def generate_launch_description():
    return launch_description(
        _launch_setup,
        argument('world', 'gz-sim world SDF (its <world name> must be arm_world)',
                 default=('description', 'gazebo', 'arm_world.sdf')),
        argument('urdf_file', 'Plain robot URDF; the gz_ros2_control blocks are injected at launch',
                 default=('description', 'arm.urdf')),
        argument('controllers_file', 'controller_manager YAML loaded by the gz_ros2_control plugin',
                 default=('config', 'gazebo_controllers.yaml')),
        argument('bridge_file', 'ros_gz_bridge parameter_bridge config_file (/clock)',
                 default=('config', 'gazebo_bridge.yaml')),
        argument('params_file', 'ROS 2 params file for the residual graph (also gives `joints`)'),
        argument('reference_file', 'Params file of reference_publisher'),
        argument('plant_file', 'Plant file for the perception node (payload estimate source)'),
        argument('namespace', 'Namespace of the residual graph, reference_publisher and perception'),
        argument('model_path', 'ONNX residual policy; empty: the params file value'),
        argument('gui', 'Start the gz-sim GUI (false: server only, -s)', default='true'),
        argument('base_height', 'Height (m) of the arm base above the ground (world fixed joint)',
                 default='1.2'),
        argument('robot_name', 'Name of the spawned gz-sim model', default='residual_arm'),
        argument('log_level', 'Log level of the residual_control nodes'),
        # Lets gz-sim resolve package://residual_control/... URIs, if any.
        AppendEnvironmentVariable('GZ_SIM_RESOURCE_PATH', os.path.dirname(share_path())),
    )
