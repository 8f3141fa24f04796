/* One of the tiny compile units of the build-probe test project. */
int unit08(int x);

int unit08(int x)
{
	int acc = 8;
	for (int k = 0; k < x; k++)
		acc = acc * 31 + k;
	return acc;
}
